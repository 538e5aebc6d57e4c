/**
 * The guild rules (src/discord/rules.ts) over real parts: guild settings, admission and a LocalJobQueue on a real
 * SQLite file. What a member types, or parameters re-used from a stored job, become a job's parameters here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createGuildRules, resolveRequest } from '../../src/discord/rules.js';
import type { Requester } from '../../src/discord/backend.js';
import { Admission } from '../../src/queue/admission.js';
import { FALLBACK_GUILD_SETTINGS, GuildSettingsStore } from '../../src/queue/settings.js';
import { sqliteBackend } from '../queue/helpers/backends.js';
import { StepGenerator } from '../queue/helpers/generator.js';
import { createQueue, params } from '../queue/helpers/queue-harness.js';

const defaults = { steps: 30, cfg: 7, size: '512x512', scheduler: 'pndm' as const, rng: 'cpu' as const };
const requester: Requester = { guildId: '1000', channelId: '500', channelNsfw: false, userId: 'u1', roleIds: [], isAdmin: false };

/** A seed the engine takes and that a random draw makes: digits, below 2^32. */
function assertDrawnSeed(seed: string): void {
  assert.match(seed, /^\d+$/);
  assert.ok(BigInt(seed) < 2n ** 32n, `a random seed is below 2^32, got ${seed}`);
}

test('seed -1 means "random", as in A1111: typed in /imagine and in re-used parameters', async () => {
  const typed = ['-1', ' -1 ', '-1', '-1'].map((seed) => resolveRequest({ prompt: 'a cat', seed }, defaults, ['512x512']).seed);
  typed.forEach(assertDrawnSeed);
  assert.ok(new Set(typed).size > 1, `fresh seeds, not one fixed value: ${typed.join(', ')}`);
  assert.equal(resolveRequest({ prompt: 'a cat', seed: '0' }, defaults, ['512x512']).seed, '0', 'a real seed is kept');
  for (const seed of ['-2', '-1.5', '- 1']) {
    assert.throws(() => resolveRequest({ prompt: 'a cat', seed }, defaults, ['512x512']), /: Seed must be a whole number from 0 to 18446744073709551615, got ".*"\. Leave the seed out, or type -1, for a random one\.$/);
  }

  const instance = await sqliteBackend.create();
  try {
    const storage = instance.open();
    const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: FALLBACK_GUILD_SETTINGS });
    const queue = createQueue(storage, new StepGenerator()).queue;
    await queue.start();
    const rules = createGuildRules({ settings, admission: new Admission({ settings, usage: storage.namespace('usage'), queue }), defaults });
    const reused = await rules.checkParams(requester, params('a cat', { seed: '-1' }));
    assertDrawnSeed(reused.params.seed);
    assert.equal((await rules.checkParams(requester, params('a cat', { seed: '42' }))).params.seed, '42', 'a stored seed is kept');
    await queue.close();
  } finally {
    await instance.dispose();
  }
});
