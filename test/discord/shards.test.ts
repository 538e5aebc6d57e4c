// The shard plan of one bot process: what discord.shards / shardCount (and start --shards / --shard-count) mean.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/index.js';
import { checkShardBackend, clientShardOptions, instanceNameOf, isPartialShardSet, shardPlanOf } from '../../src/discord/shards.js';

test('"auto" runs every shard in this process; a count without ids runs all of that count', () => {
  const auto = shardPlanOf({ shards: 'auto', shardCount: 'auto' });
  assert.deepEqual(auto, { ids: 'auto', count: 'auto' });
  assert.deepEqual(clientShardOptions(auto), { shards: 'auto' });
  assert.equal(instanceNameOf(auto), '');
  const three = shardPlanOf({ shards: 'auto', shardCount: '3' });
  assert.deepEqual(three, { ids: [0, 1, 2], count: 3 });
  assert.equal(isPartialShardSet(three), false);
  assert.deepEqual(clientShardOptions(three), { shards: [0, 1, 2], shardCount: 3 });
  assert.equal(instanceNameOf(three), '', 'all shards in one process keep the single-process store keys');
});

test('a shard list (text from the environment or a JSON list) is a share of the count, named for the store', () => {
  const share = shardPlanOf({ shards: '3,1,1', shardCount: 4 });
  assert.deepEqual(share, { ids: [1, 3], count: 4 });
  assert.equal(isPartialShardSet(share), true);
  assert.equal(instanceNameOf(share), 'shards-1,3-of-4');
  assert.deepEqual(clientShardOptions(share), { shards: [1, 3], shardCount: 4 });
  assert.equal(instanceNameOf(shardPlanOf({ shards: [0, 1], shardCount: 2 })), '', 'every id of the count is the whole bot');
});

test('ids need a count, and must exist in it', () => {
  assert.throws(() => shardPlanOf({ shards: '0,1', shardCount: 'auto' }), (error: unknown) => error instanceof ConfigError && /shardCount must say/.test(String(error)));
  assert.throws(() => shardPlanOf({ shards: [0, 4], shardCount: 4 }), (error: unknown) => error instanceof ConfigError && /shard id 4 does not exist with 4 shard\(s\)/.test(String(error)));
});

test('a share of the shards needs the Redis queue; every shard in one process works on the local backend', () => {
  const share = shardPlanOf({ shards: '0', shardCount: 2 });
  assert.throws(() => checkShardBackend(share, 'local'), (error: unknown) => error instanceof ConfigError && /several bot processes need queue\.backend "redis"/.test(String(error)));
  assert.doesNotThrow(() => checkShardBackend(share, 'redis'));
  assert.doesNotThrow(() => checkShardBackend(shardPlanOf({ shards: 'auto', shardCount: 4 }), 'local'));
  assert.doesNotThrow(() => checkShardBackend(shardPlanOf({ shards: '0,1', shardCount: 2 }), 'local'));
});
