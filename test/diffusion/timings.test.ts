import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StableDiffusionPipeline, type GenerationRequest, type GenerationResult } from '../../src/diffusion/pipeline.js';
import { tinyPipelineForSuite } from '../helpers/reference.js';

/**
 * The shape of `GenerationResult.timings` that the benchmarks read, and how the loop's counters add up. No figure is
 * compared with a time budget: only sums, counts and the nesting of the phases.
 */

const REQUEST: GenerationRequest = { prompt: 'a lighthouse', seed: 7n, steps: 4, cfg: 7, width: 64, height: 64, scheduler: 'euler' };
const KEYS = [
  'textEncoderMs', 'denoiseMs', 'unetMs', 'nodeStepMs', 'overlappedMs', 'nodeStepMsPerStep', 'stepGraphMs', 'readBackMs', 'decodeMs', 'safetyMs', 'totalMs',
];

function assertConsistent(result: GenerationResult): void {
  const { timings } = result;
  assert.deepEqual(Object.keys(timings), KEYS);
  // One entry per step the image was made with: a loop that restarted reports only the run that made it.
  assert.equal(timings.nodeStepMsPerStep.length, result.timesteps.length);
  const sum = timings.nodeStepMsPerStep.reduce((total, ms) => total + ms, 0);
  assert.ok(Math.abs(timings.nodeStepMs - sum) < 1e-9, 'nodeStepMs is the sum of the steps');
  // The UNet's and the step graph's runs happen inside the denoising phase; the phases inside the whole.
  assert.ok(timings.unetMs + timings.stepGraphMs <= timings.denoiseMs);
  assert.ok(timings.textEncoderMs + timings.denoiseMs + timings.decodeMs + timings.safetyMs <= timings.totalMs);
}

describe('GenerationResult.timings', () => {
  const pipeline = tinyPipelineForSuite();

  test('JS loop: every step counted once, no step graph, nothing read back', async () => {
    const result = await pipeline().generate(REQUEST, { deviceLoop: 'never' });
    assert.equal(result.loop, 'js');
    assertConsistent(result);
    assert.equal(result.timings.stepGraphMs, 0);
    assert.equal(result.timings.readBackMs, 0);
  });

  test('device loop: the step graph ran every step and the final latents were read back', async () => {
    const result = await pipeline().generate(REQUEST, { deviceLoop: 'always' });
    assert.equal(result.loop, 'device');
    assertConsistent(result);
    assert.ok(result.timings.stepGraphMs > 0);
    assert.ok(result.timings.readBackMs > 0);
  });

  test('after an auto fallback, the counters are those of the JS run that made the image', async () => {
    // As in device-loop.test.ts: a pipeline that believes its provider is webgpu tries the device loop, which cannot
    // start on this machine, and starts over on the JS loop.
    const lines: string[] = [];
    const pretending = new StableDiffusionPipeline(pipeline().model, { provider: 'webgpu', log: (line) => lines.push(line) });
    try {
      const result = await pretending.generate(REQUEST);
      if (result.loop === 'device') return; // a machine with a working WebGPU: nothing fell back
      assert.equal(lines.length, 1, 'the fallback was logged once');
      assertConsistent(result);
      assert.equal(result.timings.stepGraphMs, 0);
      const direct = await pipeline().generate(REQUEST, { deviceLoop: 'never' });
      assert.deepEqual(result.latents, direct.latents);
    } finally {
      await pretending.release();
    }
  });
});
