/**
 * Discord's gateway sharding, as documented (Gateway → Sharding, Get Gateway Bot, Session Start Limit Object):
 *
 * - a session that IDENTIFYs with `shard: [shard_id, num_shards]` receives the events of the guilds for which
 *   `(guild_id >> 22) % num_shards === shard_id`; events without a guild (DMs) go to shard 0 only;
 * - `GET /gateway/bot` recommends a shard count and reports the session start limit (`total`, `remaining`,
 *   `reset_after` in ms, `max_concurrency`); every IDENTIFY that starts a session spends one start, RESUME does not;
 * - shards are grouped into identify buckets `shard_id % max_concurrency`; a bucket may start one session per
 *   5 seconds, and an IDENTIFY over that gets op 9 Invalid Session.
 */

/** The shard a guild's events go to. Snowflakes carry their creation time in the bits above 22. */
export function shardOf(guildId: string, shardCount: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(shardCount));
}

/**
 * The guild an event is routed by: `guild_id`, or for the GUILD_* events about the guild itself its `id`. `null`
 * (a DM, or an event about no guild) means shard 0.
 */
export function routingGuildId(event: string, data: unknown): string | null {
  if (typeof data !== 'object' || data === null) return null;
  const record = data as Record<string, unknown>;
  if (typeof record.guild_id === 'string') return record.guild_id;
  if ((event === 'GUILD_CREATE' || event === 'GUILD_UPDATE' || event === 'GUILD_DELETE') && typeof record.id === 'string') return record.id;
  return null;
}

/** Whether a session identified as `shard` receives an event routed by `guildId`. */
export function shardReceives(shard: readonly [number, number], guildId: string | null): boolean {
  return guildId === null ? shard[0] === 0 : shardOf(guildId, shard[1]) === shard[0];
}

/**
 * Validates IDENTIFY's `shard` field. Absent means an unsharded session, `[0, 1]`; anything but two integers with
 * `0 ≤ shard_id < num_shards` is an invalid shard (close 4010).
 */
export function parseIdentifyShard(value: unknown): [number, number] | null {
  if (value === undefined || value === null) return [0, 1];
  if (!Array.isArray(value) || value.length !== 2) return null;
  const [id, count] = value as unknown[];
  if (!Number.isSafeInteger(id) || !Number.isSafeInteger(count)) return null;
  const shardId = id as number;
  const shardCount = count as number;
  if (shardCount < 1 || shardId < 0 || shardId >= shardCount) return null;
  return [shardId, shardCount];
}

/** The worker id (bits 17–21) of ids made by `snowflakeOnShard`, so they never equal an id of the generator (1). */
const ON_SHARD_WORKER = 2n;

/**
 * A snowflake minted at or just before `baseId`'s time whose shard (out of `shardCount`) is `shard`: the timestamp
 * moves back by less than `shardCount` ms, the worker bits become 2 and the process and increment bits stay.
 * Seeded guilds use it so a world can have guilds on every shard.
 */
export function snowflakeOnShard(baseId: string, shard: number, shardCount: number): string {
  const base = BigInt(baseId);
  const count = BigInt(shardCount);
  const timestamp = base >> 22n;
  const back = (((timestamp - BigInt(shard)) % count) + count) % count;
  return (((timestamp - back) << 22n) | (ON_SHARD_WORKER << 17n) | (base & 0x1ffffn)).toString();
}

export interface SessionStartLimitOptions {
  /** Session starts per reset period (Discord: 1000 for most bots). */
  total: number;
  /** Identify buckets; shards `id % maxConcurrency` share one (Discord: 1, more for large bots). */
  maxConcurrency: number;
  /** Length of the period that starts with the first IDENTIFY (Discord: 24 h). */
  resetAfterMs: number;
  /** Minimum time between two session starts of one bucket (Discord: 5 s; 0 = not enforced). */
  identifyIntervalMs: number;
}

export type SessionStartDecision = 'ok' | 'concurrency' | 'exhausted';

/** The application's session start budget and identify buckets, on the emulator's clock. */
export class SessionStartLimit {
  private remaining: number;
  private resetsAt: number | null = null;
  private readonly lastStartByBucket = new Map<number, number>();

  constructor(
    private readonly options: SessionStartLimitOptions,
    private readonly now: () => number,
  ) {
    this.remaining = options.total;
  }

  /** Spends one session start for `shardId` if its bucket and the budget allow it. */
  take(shardId: number): SessionStartDecision {
    const now = this.now();
    this.refill(now);
    const bucket = shardId % this.options.maxConcurrency;
    const last = this.lastStartByBucket.get(bucket);
    if (last !== undefined && now - last < this.options.identifyIntervalMs) return 'concurrency';
    if (this.remaining <= 0) return 'exhausted';
    if (this.resetsAt === null) this.resetsAt = now + this.options.resetAfterMs;
    this.remaining -= 1;
    this.lastStartByBucket.set(bucket, now);
    return 'ok';
  }

  /** The `session_start_limit` object of `GET /gateway/bot`. */
  view(): { total: number; remaining: number; reset_after: number; max_concurrency: number } {
    const now = this.now();
    this.refill(now);
    return {
      total: this.options.total,
      remaining: this.remaining,
      reset_after: this.resetsAt === null ? 0 : Math.max(0, Math.ceil(this.resetsAt - now)),
      max_concurrency: this.options.maxConcurrency,
    };
  }

  private refill(now: number): void {
    if (this.resetsAt !== null && now >= this.resetsAt) {
      this.remaining = this.options.total;
      this.resetsAt = null;
    }
  }
}
