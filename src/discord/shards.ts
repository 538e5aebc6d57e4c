/**
 * Gateway sharding: which shards this process runs (`discord.shards`, `discord.shardCount`, `start --shards 0,1
 * --shard-count 4`), the discord.js options that say so, and the rule that several processes need the Redis queue.
 *
 * A guild belongs to shard `(guild_id >> 22) % shardCount`, and Discord sends its interactions (commands and button
 * clicks) only to that shard. So with a fixed shard count a guild's jobs are always queued, and its buttons always
 * clicked, in the process that runs its shard, before and after that process restarts: each process delivers the
 * jobs it queued (its own active index in the job store, `instanceName`), and a restarted process picks up exactly
 * the jobs it left.
 */
import { ConfigError, type Config } from '../config/index.js';

export interface ShardPlan {
  /** The shard ids this process runs, ascending; "auto" = all of them, as many as Discord recommends. */
  ids: number[] | 'auto';
  /** Shards over all processes; "auto" only together with ids "auto". */
  count: number | 'auto';
}

/** Reads and checks `discord.shards` / `discord.shardCount` (numbers, or the text forms the environment gives). */
export function shardPlanOf(discord: Pick<Config['discord'], 'shards' | 'shardCount'>): ShardPlan {
  const count = discord.shardCount === 'auto' ? 'auto' : Number(discord.shardCount);
  if (discord.shards === 'auto') {
    // A count without ids: this one process runs every shard of that count.
    return count === 'auto' ? { ids: 'auto', count } : { ids: Array.from({ length: count }, (_, i) => i), count };
  }
  const listed = typeof discord.shards === 'string' ? discord.shards.split(',').map(Number) : discord.shards;
  const ids = [...new Set(listed)].sort((a, b) => a - b);
  if (count === 'auto') {
    throw new ConfigError([
      `discord.shards lists shard ids (${ids.join(',')}), so discord.shardCount must say how many shards the bot has in all (start --shard-count N, or IMAGINE_SHARD_COUNT)`,
    ]);
  }
  const outside = ids.filter((id) => id >= count);
  if (outside.length > 0) throw new ConfigError([`shard id ${outside.join(',')} does not exist with ${count} shard(s): ids go from 0 to ${count - 1}`]);
  return { ids, count };
}

/** Whether this process runs only some of the shards, so other processes run the rest. */
export function isPartialShardSet(plan: ShardPlan): boolean {
  return plan.ids !== 'auto' && plan.count !== 'auto' && plan.ids.length < plan.count;
}

/**
 * This process's name among the bot processes sharing one store: '' when it runs every shard (the store's
 * historical keys), else its shard set, e.g. `shards-0,1-of-4`. Stable across restarts, so a restarted process
 * reads the records it wrote.
 */
export function instanceNameOf(plan: ShardPlan): string {
  return isPartialShardSet(plan) && plan.ids !== 'auto' ? `shards-${plan.ids.join(',')}-of-${String(plan.count)}` : '';
}

/**
 * Several bot processes share the queue only through Redis: the local backend keeps its queue, and runs its jobs,
 * inside one process, so a second process would run a second queue over the same store.
 */
export function checkShardBackend(plan: ShardPlan, backend: Config['queue']['backend']): void {
  if (backend === 'redis' || !isPartialShardSet(plan) || plan.ids === 'auto') return;
  throw new ConfigError([
    `this process would run shard(s) ${plan.ids.join(',')} of ${String(plan.count)}, so other bot processes run the rest; several bot processes need queue.backend "redis" (IMAGINE_QUEUE_BACKEND=redis with REDIS_URL): the local backend's queue lives in one process. Run every shard in this process instead with discord.shards "auto".`,
  ]);
}

/** The discord.js Client options for the plan. */
export function clientShardOptions(plan: ShardPlan): { shards: number[] | 'auto'; shardCount?: number } {
  if (plan.ids === 'auto' || plan.count === 'auto') return { shards: 'auto' };
  return { shards: plan.ids, shardCount: plan.count };
}
