/**
 * One generator per image (diffusers' list of generators) and the job-batched generation it allows: a 4-image batch
 * at UNet batch 8 gives, image for image, what each seed gives alone at UNet batch 2 (PNG ±1 on ≥ 99.9 % of values,
 * latents within the fp32 reference tolerance), with the per-step noise of Euler a, DPM++ 2M SDE and LCM drawn per
 * image too, on the JS loop and on the device loop.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { InvalidRequestError } from '../../src/diffusion/errors.js';
import { imageCountOf, validateRequest, type GenerationRequest, type GenerationResult } from '../../src/diffusion/pipeline.js';
import { generationInfotext } from '../../src/diffusion/png.js';
import { createImageNoise, PerImageGenerators, type RngDevice } from '../../src/diffusion/rng/index.js';
import type { SchedulerName } from '../../src/diffusion/schedulers/types.js';
import { EXACT_BOUNDS, FIXTURES, fractionWithin, maxAbs, maxAbsDiff, tinyPipelineForSuite } from '../helpers/reference.js';

interface RandnReference {
  device: RngDevice;
  seed: number;
  shape: number[];
  values?: number[];
}
const torchRandn = JSON.parse(readFileSync(`${FIXTURES}/reference/torch-randn.json`, 'utf8')) as RandnReference[];

/** torch's `randn(shape, generator=manual_seed(seed))` values from the fixture (made by torch, not by us). */
function torchValues(device: RngDevice, seed: number, shape: readonly number[]): number[] {
  const entry = torchRandn.find((r) => r.device === device && r.seed === seed && r.shape.join() === shape.join());
  assert.ok(entry?.values, `torch-randn.json has ${device} seed ${seed} [${shape.join(', ')}]`);
  return entry.values;
}

describe('PerImageGenerators: row i of every draw from image i\'s generator, as diffusers\' randn_tensor', () => {
  for (const device of ['cpu', 'cuda'] as const) {
    // [1, 4, 8, 8] rows take torch's vectorised CPU path, [5] rows its scalar one.
    for (const rowShape of [[1, 4, 8, 8], [5]]) {
      test(`${device}: seeds 0, 1, 42, rows [${rowShape.join(', ')}] equal torch's draws for each seed alone`, () => {
        const seeds = [0, 1, 42];
        const rowLength = rowShape.reduce((a, b) => a * b, 1);
        const noise = createImageNoise(device, seeds.map(BigInt));
        assert.ok(noise instanceof PerImageGenerators);
        assert.equal(noise.device, device);
        const values = noise.randn(seeds.length * rowLength);
        for (const [row, seed] of seeds.entries()) {
          const expected = torchValues(device, seed, rowShape);
          const actual = values.subarray(row * rowLength, (row + 1) * rowLength);
          assert.ok(maxAbsDiff(actual, expected) <= 1e-5, `${device} row ${row} (seed ${seed})`);
        }
      });
    }
  }

  test('a draw that does not split into equal rows is refused', () => {
    assert.throws(() => createImageNoise('cpu', [1n, 2n, 3n]).randn(256), /equal image rows/);
  });

  test('a single seed keeps one generator for the whole batch (num_images_per_prompt, as before)', () => {
    assert.ok(!(createImageNoise('cpu', 5n) instanceof PerImageGenerators));
  });
});

describe('requests with a seed per image', () => {
  const base: GenerationRequest = { prompt: 'x', seed: [3n, 4n, 5n], steps: 2, cfg: 7, width: 64, height: 64 };

  test('the batch is the number of seeds; a different batch or a bad seed is refused', () => {
    assert.equal(imageCountOf(base), 3);
    assert.equal(imageCountOf({ seed: 3n, batch: 2 }), 2);
    validateRequest(base);
    validateRequest({ ...base, batch: 3 });
    assert.throws(() => validateRequest({ ...base, batch: 2 }), InvalidRequestError);
    assert.throws(() => validateRequest({ ...base, seed: [] }), InvalidRequestError);
    assert.throws(() => validateRequest({ ...base, seed: [1n, -1n] }), InvalidRequestError);
    assert.throws(() => validateRequest({ ...base, seed: Array.from({ length: 9 }, (_, i) => BigInt(i)) }), InvalidRequestError);
  });

  test('each image\'s infotext carries its own seed and no batch position (it is that seed\'s image alone)', () => {
    const line = generationInfotext(base, 'Euler', { index: 2, width: 64, height: 64 }, 'tiny-sd');
    assert.match(line, /Seed: 5,/);
    assert.doesNotMatch(line, /Batch/);
    const shared = generationInfotext({ ...base, seed: 3n, batch: 3 }, 'Euler', { index: 2, width: 64, height: 64 }, 'tiny-sd');
    assert.match(shared, /Seed: 3,.*Batch size: 3, Batch pos: 2/);
  });
});

describe('a 4-image job in one UNet call equals each image made alone (tiny model, CPU)', () => {
  const pipeline = tinyPipelineForSuite();

  const SEEDS = [41n, 42n, 43n, 44n];
  const request = (scheduler: SchedulerName, seed: bigint | readonly bigint[]): GenerationRequest => ({
    prompt: 'a lighthouse on a cliff',
    negativePrompt: 'blurry',
    seed,
    steps: 5,
    cfg: scheduler === 'lcm' ? 1.5 : 7,
    width: 64,
    height: 80,
    scheduler,
  });

  /** Holds image i of `batched` to seed i made alone, with the fp32 engine's reference bounds. */
  function assertEachImageAlone(batched: GenerationResult, alone: GenerationResult[], label: string): void {
    const perImage = batched.latents.length / SEEDS.length;
    for (const [index, single] of alone.entries()) {
      const row = batched.latents.subarray(index * perImage, (index + 1) * perImage);
      const tolerance = EXACT_BOUNDS.latentRelative * maxAbs(single.latents);
      const diff = maxAbsDiff(row, single.latents);
      assert.ok(diff <= tolerance, `${label} image ${index}: latents differ by ${diff} (tolerance ${tolerance})`);
      const within = fractionWithin(batched.images[index]!.rgb, single.images[0]!.rgb, 1);
      assert.ok(within >= EXACT_BOUNDS.withinOne, `${label} image ${index}: only ${(within * 100).toFixed(3)}% of values within ±1`);
    }
    // The images are not one image four times: the seeds really differ row by row.
    assert.ok(maxAbsDiff(alone[0]!.latents, alone[1]!.latents) > 1e-2);
  }

  for (const scheduler of ['euler', 'euler_a', 'dpmpp_2m_sde', 'lcm'] as const) {
    test(`${scheduler}: seeds 41…44 batched at UNet batch 8 vs each alone`, async (t) => {
      let unetBatch = 0;
      const batched = await pipeline().generate(request(scheduler, SEEDS), { onProgress: ({ shape }) => void (unetBatch = shape[0]) });
      assert.equal(batched.images.length, 4);
      assert.equal(unetBatch, 4, 'progress shows the whole batch');
      const alone: GenerationResult[] = [];
      for (const seed of SEEDS) alone.push(await pipeline().generate(request(scheduler, seed)));
      assertEachImageAlone(batched, alone, scheduler);
      t.diagnostic(`${scheduler}: max latent diff ${Math.max(...alone.map((single, i) => maxAbsDiff(batched.latents.subarray(i * single.latents.length, (i + 1) * single.latents.length), single.latents))).toExponential(2)}`);
    });
  }

  test('euler_a on the device loop: per-image step noise goes in as the step graph\'s (4, 4, h, w) noise input', async () => {
    const batched = await pipeline().generate(request('euler_a', SEEDS), { deviceLoop: 'always' });
    assert.equal(batched.loop, 'device');
    const alone: GenerationResult[] = [];
    for (const seed of SEEDS) alone.push(await pipeline().generate(request('euler_a', seed), { deviceLoop: 'never' }));
    assertEachImageAlone(batched, alone, 'euler_a device loop');
  });
});
