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
