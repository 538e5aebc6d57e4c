/**
 * The fair waiting room of the Redis backend: the FairScheduler's structure (priority lane, guild ring, per-guild
 * user rings, per-user FIFO lists) kept in Redis lists and changed only by the Lua scripts below, so every bot and
 * worker process sees one order and no two of them can take the same job.
 *
 *   <p>:fair:jobs              hash   job id → "guild\nuser"   (membership)
 *   <p>:fair:data              hash   job id → JSON RedisJobData (what the dispatcher hands BullMQ)
 *   <p>:fair:priority          list   restored jobs served before the rings
 *   <p>:fair:guilds            list   guild ring (front = served next)
 *   <p>:fair:users:<guild>     list   user ring of one guild
 *   <p>:fair:user:<guild>:<u>  list   one user's waiting job ids, oldest first
 *
 * The scripts build the per-guild/per-user key names from the prefix, so they assume one Redis node (not Cluster);
 * docs/queue-redis.md says so.
 */
import type { RedisClient } from 'bullmq';
import { FairScheduler, type FairState, type SchedulableJob } from '../fair-scheduler.js';
import type { RedisJobData, RedisKeys } from './protocol.js';

// KEYS: jobs, priority, guilds, data. ARGV: base, id, guild, user, priority ('1' or '0'), data JSON.
// Returns 1 when added, 0 when the job was already waiting.
const PUSH = `
local jobs, priority, guilds, data = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, id, guild, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', jobs, id) == 1 then return 0 end
redis.call('HSET', jobs, id, guild .. '\\n' .. user)
redis.call('HSET', data, id, ARGV[6])
if ARGV[5] == '1' then
  redis.call('RPUSH', priority, id)
  return 1
end
local users = base .. 'users:' .. guild
local list = base .. 'user:' .. guild .. ':' .. user
if redis.call('LLEN', users) == 0 then redis.call('RPUSH', guilds, guild) end
if redis.call('LLEN', list) == 0 then redis.call('RPUSH', users, user) end
redis.call('RPUSH', list, id)
return 1
`;

// KEYS: jobs, priority, guilds, data. ARGV: base, mode ('peek' or 'take'), expected id (take only).
// Returns the next job id or false. 'take' removes it and rotates the rings exactly as FairScheduler.next() does,
// but only when it is the expected id (the one the dispatcher peeked and handed to BullMQ); else it takes nothing.
const NEXT = `
local jobs, priority, guilds, data = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, take, expected = ARGV[1], ARGV[2] == 'take', ARGV[3]
local first = redis.call('LINDEX', priority, 0)
if first then
  if take then
    if first ~= expected then return false end
    redis.call('LPOP', priority); redis.call('HDEL', jobs, first); redis.call('HDEL', data, first)
  end
  return first
end
local guild = redis.call('LINDEX', guilds, 0)
if not guild then return false end
local users = base .. 'users:' .. guild
local user = redis.call('LINDEX', users, 0)
local list = base .. 'user:' .. guild .. ':' .. user
local id = redis.call('LINDEX', list, 0)
if not take then return id end
if id ~= expected then return false end
redis.call('LPOP', list)
redis.call('LPOP', users)
redis.call('LPOP', guilds)
if redis.call('LLEN', list) > 0 then redis.call('RPUSH', users, user) end
if redis.call('LLEN', users) > 0 then redis.call('RPUSH', guilds, guild) end
redis.call('HDEL', jobs, id)
redis.call('HDEL', data, id)
return id
`;

// KEYS: jobs, priority, guilds, data. ARGV: base, id. Returns 1 when the job was waiting here (and is now removed).
const REMOVE = `
local jobs, priority, guilds, data = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, id = ARGV[1], ARGV[2]
local owner = redis.call('HGET', jobs, id)
if not owner then return 0 end
redis.call('HDEL', jobs, id)
redis.call('HDEL', data, id)
if redis.call('LREM', priority, 0, id) > 0 then return 1 end
local cut = string.find(owner, '\\n', 1, true)
local guild, user = string.sub(owner, 1, cut - 1), string.sub(owner, cut + 1)
local users = base .. 'users:' .. guild
local list = base .. 'user:' .. guild .. ':' .. user
redis.call('LREM', list, 0, id)
if redis.call('LLEN', list) == 0 then redis.call('LREM', users, 0, user) end
if redis.call('LLEN', users) == 0 then redis.call('LREM', guilds, 0, guild) end
return 1
`;

// KEYS: jobs, priority, guilds, data. ARGV: base.
// Returns { { id, owner }… (priority lane), { guild, { user, { ids } }… }… } in ring order.
const STATE = `
local jobs, priority, guilds = KEYS[1], KEYS[2], KEYS[3]
local base = ARGV[1]
local lane0 = {}
for _, id in ipairs(redis.call('LRANGE', priority, 0, -1)) do
  table.insert(lane0, { id, redis.call('HGET', jobs, id) or '' })
end
local out = { lane0 }
for _, guild in ipairs(redis.call('LRANGE', guilds, 0, -1)) do
  local lane = { guild }
  for _, user in ipairs(redis.call('LRANGE', base .. 'users:' .. guild, 0, -1)) do
    table.insert(lane, { user, redis.call('LRANGE', base .. 'user:' .. guild .. ':' .. user, 0, -1) })
  end
  table.insert(out, lane)
end
return out
`;

// KEYS: lock. ARGV: token. Deletes the lock only when this process still holds it.
const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

// KEYS: key. ARGV: value, ttl ms. SET NX PX (the client interface has no NX): 1 when this call set it.
const SET_NX = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
`;

const COMMANDS = {
  imagineFairPush: { numberOfKeys: 4, lua: PUSH },
  imagineFairNext: { numberOfKeys: 4, lua: NEXT },
  imagineFairRemove: { numberOfKeys: 4, lua: REMOVE },
  imagineFairState: { numberOfKeys: 4, lua: STATE, readOnly: true },
  imagineUnlock: { numberOfKeys: 1, lua: UNLOCK },
  imagineSetNx: { numberOfKeys: 1, lua: SET_NX },
} as const;

const defined = new WeakSet<object>();

/** Registers the scripts on a client once. */
export function defineScripts(client: RedisClient): void {
  if (defined.has(client)) return;
  for (const [name, definition] of Object.entries(COMMANDS)) client.defineCommand(name, definition);
  defined.add(client);
}

/** SET key value NX PX ttl; true when this call set it. */
export async function setIfAbsent(client: RedisClient, key: string, value: string, ttlMs: number): Promise<boolean> {
  defineScripts(client);
  return (await client.runCommand('imagineSetNx', [key, value, ttlMs])) === 1;
}

export async function releaseLock(client: RedisClient, key: string, token: string): Promise<void> {
  defineScripts(client);
  await client.runCommand('imagineUnlock', [key, token]);
}

export class RedisFairStore {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: RedisKeys,
  ) {
    defineScripts(client);
  }

  private get ringKeys(): string[] {
    return [this.keys.fairJobs, this.keys.fairPriority, this.keys.fairGuilds, this.keys.fairData];
  }

  /** Adds a waiting job (priority: the lane served before all guilds); false when it was already waiting. */
  async push(data: RedisJobData, options: { priority?: boolean } = {}): Promise<boolean> {
    const { id, owner } = data;
    const args = [...this.ringKeys, this.keys.fairBase, id, owner.guildId, owner.userId, options.priority ? '1' : '0', JSON.stringify(data)];
    return (await this.client.runCommand('imagineFairPush', args)) === 1;
  }

  /** The job the next take() would hand out, without taking it. */
  async peek(): Promise<string | undefined> {
    return (await this.client.runCommand('imagineFairNext', [...this.ringKeys, this.keys.fairBase, 'peek', ''])) || undefined;
  }

  /** Takes the next job if it is `expected`; true when taken. */
  async take(expected: string): Promise<boolean> {
    return (await this.client.runCommand('imagineFairNext', [...this.ringKeys, this.keys.fairBase, 'take', expected])) === expected;
  }

  /** A waiting job's data. */
  async data(id: string): Promise<RedisJobData | undefined> {
    const raw = await this.client.hget(this.keys.fairData, id);
    return raw ? (JSON.parse(raw) as RedisJobData) : undefined;
  }

  /** Removes a waiting job (cancel); false when it was not waiting here. */
  async remove(id: string): Promise<boolean> {
    return (await this.client.runCommand('imagineFairRemove', [...this.ringKeys, this.keys.fairBase, id])) === 1;
  }

  async has(id: string): Promise<boolean> {
    return (await this.client.hexists(this.keys.fairJobs, id)) === 1;
  }

  /** The whole waiting room as a FairScheduler, for positions and counts (its order() is the dispatch order). */
  async scheduler(): Promise<FairScheduler<SchedulableJob>> {
    const raw = (await this.client.runCommand('imagineFairState', [...this.ringKeys, this.keys.fairBase])) as unknown[];
    const [priority, ...lanes] = raw as [Array<[string, string]>, ...Array<[string, ...Array<[string, string[]]>]>];
    const state: FairState = {
      priority: priority.map(([id, owner]) => {
        const [guildId = '', userId = ''] = owner.split('\n');
        return { id, guildId, userId };
      }),
      guilds: lanes.map(([guildId, ...users]) => ({ guildId, users: users.map(([userId, jobIds]) => ({ userId, jobIds })) })),
    };
    return FairScheduler.fromState(state);
  }
}
