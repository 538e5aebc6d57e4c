/**
 * Samplers with request defaults of their own: LCM is made for a few steps at low guidance, so a member who picks it
 * without giving steps or CFG gets those, not SD's 30 steps at CFG 7, and more steps than it can take are refused
 * before the job is queued.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { SAMPLER_REQUEST_DEFAULTS } from '../../src/diffusion/schedulers/index.js';
import { requestDefaults, resolveRequest } from '../../src/discord/rules.js';
import { RequestLimitError } from '../../src/queue/errors.js';

describe('per-sampler request defaults', () => {
  const config = loadConfig({ env: {}, cwd: '/nonexistent-folder-for-defaults' });
  const sizes = [config.generation.defaults.size];
  const defaults = requestDefaults(config, 'pndm');

  test('LCM without steps or CFG gets 4 steps at CFG 1.5; given values are kept; other samplers keep the configured ones', () => {
    assert.deepEqual(SAMPLER_REQUEST_DEFAULTS.lcm, { steps: 4, cfg: 1.5, maxSteps: 50 });
    const lcm = resolveRequest({ prompt: 'a cat', sampler: 'lcm' }, defaults, sizes);
    assert.equal(lcm.steps, 4);
    assert.equal(lcm.cfg, 1.5);
    const chosen = resolveRequest({ prompt: 'a cat', sampler: 'lcm', steps: 8, cfg: 2 }, defaults, sizes);
    assert.equal(chosen.steps, 8);
    assert.equal(chosen.cfg, 2);
    const euler = resolveRequest({ prompt: 'a cat', sampler: 'euler' }, defaults, sizes);
    assert.equal(euler.steps, config.generation.defaults.steps);
    assert.equal(euler.cfg, config.generation.defaults.cfg);
  });

  test('more steps than LCM takes are refused with a one-line reason', () => {
    assert.throws(
      () => resolveRequest({ prompt: 'a cat', sampler: 'lcm', steps: 51 }, defaults, sizes),
      (error: unknown) => error instanceof RequestLimitError && error.field === 'steps' && /LCM takes at most 50 steps/.test(error.message),
    );
    assert.equal(resolveRequest({ prompt: 'a cat', sampler: 'lcm', steps: 50 }, defaults, sizes).steps, 50);
  });

  test("when the configuration makes LCM the default sampler, its configured steps and CFG apply (the ceiling still holds)", () => {
    const lcmByDefault = { ...config, generation: { ...config.generation, defaults: { ...config.generation.defaults, scheduler: 'lcm' as const, steps: 6, cfg: 1 } } };
    const own = requestDefaults(lcmByDefault, 'pndm');
    const params = resolveRequest({ prompt: 'a cat' }, own, sizes);
    assert.equal(params.scheduler, 'lcm');
    assert.equal(params.steps, 6);
    assert.equal(params.cfg, 1);
    assert.throws(() => resolveRequest({ prompt: 'a cat', steps: 60 }, own, sizes), RequestLimitError);
    // A model whose own scheduler_config.json names LCMScheduler, with no configured default sampler: LCM's defaults.
    const fromModel = resolveRequest({ prompt: 'a cat' }, requestDefaults(config, 'lcm'), sizes);
    assert.equal(fromModel.steps, 4);
  });
});
