import { createHash } from 'node:crypto';

/**
 * Per-route rate limits with Discord's headers, and faults injected through the control API.
 * Limits run on real time (not the advanceable emulator clock): they exist to exercise @discordjs/rest's queueing.
 */

export interface RateLimitRule {
  limit: number;
  windowMs: number;
}

/** Keys are `METHOD /route/template` as recorded in the log; `*` for the method matches any. */
export const DEFAULT_RATE_LIMITS: Record<string, RateLimitRule> = {
  'POST /channels/:channel_id/messages': { limit: 5, windowMs: 5000 },
  'PATCH /channels/:channel_id/messages/:message_id': { limit: 5, windowMs: 5000 },
  'DELETE /channels/:channel_id/messages/:message_id': { limit: 5, windowMs: 1000 },
  'PATCH /webhooks/:application_id/:token/messages/:message_id': { limit: 5, windowMs: 2000 },
  'POST /webhooks/:application_id/:token': { limit: 5, windowMs: 2000 },
  'POST /interactions/:interaction_id/:token/callback': { limit: 50, windowMs: 1000 },
  'PUT /applications/:application_id/commands': { limit: 10, windowMs: 10000 },
  'PUT /applications/:application_id/guilds/:guild_id/commands': { limit: 10, windowMs: 10000 },
};
const FALLBACK_RULE: RateLimitRule = { limit: 50, windowMs: 1000 };
/** Discord's global limit for bot tokens; interaction routes are exempt, as on Discord. */
const GLOBAL_RULE: RateLimitRule = { limit: 50, windowMs: 1000 };

export interface RateLimitDecision {
  headers: Record<string, string>;
  /** Set when the request must be answered with 429. */
  limited: null | { retryAfter: number; global: boolean; scope: 'user' | 'global' | 'shared' };
}

interface Window {
  startedAt: number;
  count: number;
}

export interface InjectedFault {
  kind: 'rate_limit' | 'server_error' | 'connection_reset';
  route: string;
  remaining: number;
  retryAfter: number;
  status: number;
  global: boolean;
  /** Only requests that upload files (multipart bodies), e.g. the edit that posts a result, not the text edits. */
  multipartOnly?: boolean;
}

export class RateLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly globalWindow: Window = { startedAt: 0, count: 0 };
  private readonly faults: InjectedFault[] = [];

  constructor(
    private readonly rules: Record<string, RateLimitRule> = DEFAULT_RATE_LIMITS,
    private readonly enabled = true,
  ) {}

  static bucketHash(routeKey: string): string {
    return createHash('sha1').update(routeKey).digest('hex').slice(0, 16);
  }

  /** Counts one request against its route bucket (and the global bucket unless exempt). */
  take(method: string, template: string, majorParameter: string, exemptFromGlobal: boolean): RateLimitDecision {
    const routeKey = `${method} ${template}`;
    const rule = this.rules[routeKey] ?? FALLBACK_RULE;
    const hash = RateLimiter.bucketHash(routeKey);
    const now = Date.now();
    const key = `${hash}:${majorParameter}`;
    let window = this.windows.get(key);
    if (!window || now - window.startedAt >= rule.windowMs) {
      window = { startedAt: now, count: 0 };
      this.windows.set(key, window);
    }
    const resetAfterMs = Math.max(0, window.startedAt + rule.windowMs - now);
    const headers: Record<string, string> = {
      'X-RateLimit-Limit': String(rule.limit),
      'X-RateLimit-Bucket': hash,
      'X-RateLimit-Reset': ((now + resetAfterMs) / 1000).toFixed(3),
      'X-RateLimit-Reset-After': (resetAfterMs / 1000).toFixed(3),
    };
    if (this.enabled && !exemptFromGlobal) {
      if (now - this.globalWindow.startedAt >= GLOBAL_RULE.windowMs) {
        this.globalWindow.startedAt = now;
        this.globalWindow.count = 0;
      }
      if (this.globalWindow.count >= GLOBAL_RULE.limit) {
        const retryAfter = Math.max(0.001, (this.globalWindow.startedAt + GLOBAL_RULE.windowMs - now) / 1000);
        return { headers: { ...headers, 'X-RateLimit-Remaining': '0', 'X-RateLimit-Global': 'true', 'X-RateLimit-Scope': 'global' }, limited: { retryAfter, global: true, scope: 'global' } };
      }
    }
    if (this.enabled && window.count >= rule.limit) {
      headers['X-RateLimit-Remaining'] = '0';
      headers['X-RateLimit-Scope'] = 'user';
      return { headers, limited: { retryAfter: Math.max(0.001, resetAfterMs / 1000), global: false, scope: 'user' } };
    }
    window.count += 1;
    if (!exemptFromGlobal) this.globalWindow.count += 1;
    headers['X-RateLimit-Remaining'] = String(Math.max(0, rule.limit - window.count));
    return { headers, limited: null };
  }

  inject(fault: Omit<InjectedFault, 'remaining'> & { count: number }): void {
    this.faults.push({ kind: fault.kind, route: fault.route, remaining: fault.count, retryAfter: fault.retryAfter, status: fault.status, global: fault.global, multipartOnly: fault.multipartOnly === true });
  }

  /** The next injected fault for this request, if any (each use counts down). */
  takeFault(method: string, template: string, path: string, multipart = false): InjectedFault | null {
    for (const fault of this.faults) {
      if (fault.remaining <= 0) continue;
      if (fault.multipartOnly && !multipart) continue;
      if (!faultMatches(fault.route, method, template, path)) continue;
      fault.remaining -= 1;
      return fault;
    }
    return null;
  }

  pendingFaults(): InjectedFault[] {
    return this.faults.filter((f) => f.remaining > 0);
  }
}

/**
 * A fault's `route` is `*`, a route template as the log shows it (`/webhooks/:application_id/:token/messages/:message_id`),
 * optionally prefixed with a method (`PATCH /webhooks/…`), or a concrete path prefix (`/channels/123/messages`).
 */
export function faultMatches(route: string, method: string, template: string, path: string): boolean {
  const trimmed = route.trim();
  if (trimmed === '*' || trimmed === '') return true;
  const space = trimmed.indexOf(' ');
  let wantedMethod: string | null = null;
  let wantedRoute = trimmed;
  if (space > 0 && /^[A-Za-z]+$/.test(trimmed.slice(0, space))) {
    wantedMethod = trimmed.slice(0, space).toUpperCase();
    wantedRoute = trimmed.slice(space + 1).trim();
  }
  if (wantedMethod && wantedMethod !== method) return false;
  const normalize = (r: string) => r.replace(/^\/api(\/v\d+)?/, '').replace(/\/+$/, '');
  const wanted = normalize(wantedRoute);
  return wanted === '' || wanted === template || wanted === '*' || normalize(path) === wanted || normalize(path).startsWith(`${wanted}/`);
}
