/**
 * Errors as they may be logged. discord.js's REST errors carry the request URL, and for interaction webhooks that
 * URL holds the interaction token (a credential for 15 minutes), plus the request body: neither belongs in logs.
 */
import { DiscordAPIError, HTTPError, RateLimitError } from 'discord.js';

/** Replaces interaction tokens in webhook and callback paths. */
export function redactInteractionTokens(text: string): string {
  return text.replace(/\/(webhooks|interactions)\/(\d+)\/[^/?\s]+/g, '/$1/$2/[token]');
}

/** A plain object safe to pass as pino's `err`. */
export function loggableError(error: unknown): Record<string, unknown> {
  if (error instanceof DiscordAPIError || error instanceof HTTPError) {
    return {
      type: error.name,
      message: redactInteractionTokens(error.message),
      status: error.status,
      method: error.method,
      path: redactInteractionTokens(new URL(error.url, 'http://x').pathname),
      ...(error instanceof DiscordAPIError ? { code: error.code } : {}),
    };
  }
  if (error instanceof RateLimitError) {
    return { type: error.name, route: redactInteractionTokens(error.route), retryAfter: error.retryAfter, global: error.global };
  }
  if (error instanceof Error) {
    return { type: error.name, message: redactInteractionTokens(error.message), stack: error.stack ? redactInteractionTokens(error.stack) : undefined };
  }
  return { message: redactInteractionTokens(String(error)) };
}

/** Socket-level failures of a request: the peer closed a kept-alive connection, reset it, or never answered. */
const NETWORK_ERROR_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNREFUSED', 'ECONNABORTED', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED']);

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Whether trying the same Discord call again later may succeed: a 5xx, a rate limit, or a network failure (undici wraps
 * socket errors as `TypeError: fetch failed` with the socket error as its cause). A 4xx answer is final.
 */
export function isTransientDiscordError(error: unknown): boolean {
  if (error instanceof RateLimitError) return true;
  if (error instanceof DiscordAPIError || error instanceof HTTPError) return error.status >= 500;
  if (error instanceof Error && error.name === 'AbortError') return true;
  for (let cause: unknown = error, depth = 0; cause && depth < 4; cause = (cause as { cause?: unknown }).cause, depth += 1) {
    const code = errorCode(cause);
    if (code && NETWORK_ERROR_CODES.has(code)) return true;
  }
  return false;
}

/** How long Discord asked us to wait (a rate limit's Retry-After), if it said. */
export function retryAfterMs(error: unknown): number | undefined {
  return error instanceof RateLimitError ? error.retryAfter : undefined;
}

/** Discord's "Unknown Message" (10008) and "Unknown interaction" (10062): the thing was deleted or expired meanwhile. */
export function isGoneError(error: unknown): boolean {
  return error instanceof DiscordAPIError && (error.code === 10008 || error.code === 10062);
}
