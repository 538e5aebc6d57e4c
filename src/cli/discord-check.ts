/**
 * Asks Discord, before `start` spends seconds to minutes loading and warming up the model, whether it can be reached
 * and accepts the token: one `GET /users/@me` through the configured API base (the emulator's in tests and the
 * sandbox). Each way it can fail is one sentence saying what to do; the token never appears in it.
 */
import { ImagineError } from '../errors.js';

/** Discord could not be reached, or refused the token. */
export class DiscordCheckError extends ImagineError {
  constructor(code: 'discord_unreachable' | 'discord_token_refused' | 'discord_error', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'DiscordCheckError';
  }
}

export interface DiscordBotUser {
  id: string;
  username: string;
}

/** How long to wait for Discord's answer: long enough for a slow link, short enough that a hang is reported. */
const CHECK_TIMEOUT_MS = 15_000;

/** The first network error code in an error and its causes (fetch wraps them: TypeError → cause ENOTFOUND). */
function networkReason(error: unknown): string {
  for (let current: unknown = error; current; current = (current as { cause?: unknown }).cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code.length > 0) return code;
    if ((current as { name?: unknown }).name === 'TimeoutError') return `no answer within ${CHECK_TIMEOUT_MS / 1000} s`;
  }
  return error instanceof Error ? error.message : String(error);
}

export async function checkDiscordToken(discord: { apiBase: string; token: string }, timeoutMs = CHECK_TIMEOUT_MS): Promise<DiscordBotUser> {
  const url = `${discord.apiBase.replace(/\/+$/, '')}/v10/users/@me`;
  let response: Response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bot ${discord.token}` }, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    throw new DiscordCheckError(
      'discord_unreachable',
      `cannot reach Discord at ${discord.apiBase} (${networkReason(error)}): check this machine's network, DNS and proxy (or DISCORD_API_BASE), then start again.`,
      { cause: error },
    );
  }
  if (response.status === 401) {
    throw new DiscordCheckError(
      'discord_token_refused',
      'Discord refused DISCORD_TOKEN (401 Unauthorized): on the Developer Portal open your application → Bot → Reset Token, and put the new token in .env.',
    );
  }
  if (!response.ok) {
    throw new DiscordCheckError('discord_error', `Discord answered ${response.status} ${response.statusText} to the token check at ${discord.apiBase}: try again in a minute.`);
  }
  const user = (await response.json()) as Partial<DiscordBotUser>;
  return { id: String(user.id ?? ''), username: String(user.username ?? '') };
}
