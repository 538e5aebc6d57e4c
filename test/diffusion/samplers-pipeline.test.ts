/**
 * The samplers added after the first set (Heun, DPM++ 2M SDE, UniPC, LCM) run a whole generation on the tiny model
 * (real ONNX sessions): the UNet is called once per timestep, the same seed gives the same latents (their per-step
 * noise included), and LCM, which has a linear step, gives the same latents on the device loop as on the JS loop.
 * Their numerical parity with diffusers is shown step by step in schedulers-more.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { GenerationRequest } from '../../src/diffusion/pipeline.js';
import type { SchedulerName } from '../../src/diffusion/schedulers/types.js';
import { maxAbs, maxAbsDiff, tinyPipelineForSuite } from '../helpers/reference.js';

describe('new samplers in the pipeline (tiny model, CPU)', () => {
  const pipeline = tinyPipelineForSuite();

  const request = (scheduler: SchedulerName, extra: Partial<GenerationRequest> = {}): GenerationRequest => ({
    prompt: 'a lighthouse',
    seed: 7n,
    steps: 4,
    cfg: scheduler === 'lcm' ? 1.5 : 7,
    width: 64,
    height: 64,
    scheduler,
    ...extra,
  });

  const cases: Array<[SchedulerName, boolean, string, number]> = [
    ['heun', false, 'Heun', 7],
    ['heun', true, 'Heun Karras', 7],
    ['dpmpp_2m_sde', false, 'DPM++ 2M SDE', 4],
    ['dpmpp_2m_sde', true, 'DPM++ 2M SDE Karras', 4],
    ['unipc', false, 'UniPC', 4],
    ['unipc', true, 'UniPC Karras', 4],
    ['lcm', false, 'LCM', 4],
  ];
  for (const [scheduler, karras, sampler, unetRuns] of cases) {
    test(`${sampler}: ${unetRuns} UNet runs for 4 steps, reproducible from the seed`, async () => {
      const steps: number[] = [];
      const first = await pipeline().generate(request(scheduler, { karras }), { onStep: ({ step }) => steps.push(step) });
      assert.equal(first.sampler, sampler);
      assert.equal(first.scheduler, scheduler);
      assert.equal(first.timesteps.length, unetRuns);
      assert.deepEqual(steps, Array.from({ length: unetRuns }, (_, i) => i + 1));
      assert.ok(first.latents.every(Number.isFinite));
      assert.equal(first.images.length, 1);
      const again = await pipeline().generate(request(scheduler, { karras }));
      assert.deepEqual(again.latents, first.latents);
      const otherSeed = await pipeline().generate(request(scheduler, { karras, seed: 8n }));
      assert.ok(maxAbsDiff(otherSeed.latents, first.latents) > 1e-3);
    });
  }

  test('LCM on the device loop (forced on the CPU) matches the JS loop, per-step noise included', async () => {
    const js = await pipeline().generate(request('lcm'), { deviceLoop: 'never' });
    const device = await pipeline().generate(request('lcm'), { deviceLoop: 'always' });
    assert.equal(js.loop, 'js');
    assert.equal(device.loop, 'device');
    const diff = maxAbsDiff(device.latents, js.latents);
    assert.ok(diff <= 1e-5 * maxAbs(js.latents), `loops differ by ${diff}`);
  });

  test("DPM++ 2M SDE is not DPM++ 2M: the same schedule and seed, but its per-step noise changes the result", async () => {
    const sde = await pipeline().generate(request('dpmpp_2m_sde'));
    const ode = await pipeline().generate(request('dpmpp_2m'));
    assert.ok(maxAbsDiff(sde.latents, ode.latents) > 1e-3);
  });
});
