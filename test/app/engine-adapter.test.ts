/**
 * The real pipeline behind the queue's ImageGenerator contract, on the tiny model: one seed per image, the job's
 * images in one batched generation (progress counts its steps, previews carry the whole batch), A1111 parameters in
 * every PNG, and cancellation between steps.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import sharp from 'sharp';
import { CancelledError } from '../../src/errors.js';
import { loadPipeline } from '../../src/diffusion/load.js';
import type { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { readTextChunks } from '../../src/diffusion/png.js';
import { offsetSeed, PipelineImageGenerator } from '../../src/app/engine-adapter.js';
import type { GenerationProgress, GenerationRequest } from '../../src/queue/types.js';
import { HIRES_FIX_SCALE, HIRES_FIX_STRENGTH } from '../../src/queue/index.js';
import { TINY_MODEL } from '../discord/harness.js';

describe('PipelineImageGenerator', () => {
  let pipeline: StableDiffusionPipeline;
  const request: GenerationRequest = {
    prompt: 'a tiny test', negative: 'noise', seed: 41n, steps: 3, cfg: 5, width: 64, height: 64, scheduler: 'euler', count: 2, rng: 'cpu',
  };

  before(async () => {
    pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: true });
  });

  test('each image has its own seed, reproducible alone; the job is one batched run', async () => {
    const generator = new PipelineImageGenerator(pipeline, { safetyCheck: true });
    const progress: GenerationProgress[] = [];
    const result = await generator.generate(request, { signal: new AbortController().signal, onProgress: (p) => void progress.push({ ...p }) });
    assert.deepEqual(result.images.map((image) => image.seed), [41n, 42n]);
    assert.equal(result.model, 'tiny-sd');
    assert.deepEqual(progress.map((p) => p.step), [1, 2, 3], 'one run of 3 steps makes both images');
    assert.ok(progress.every((p) => p.totalSteps === 3));
    const withLatents = progress.filter((p) => p.latents);
    assert.ok(withLatents.every((p) => p.latents?.shape.join() === '2,4,8,8'), 'previews carry both images');
    assert.ok(progress[0]?.latents && progress.at(-1)?.latents, 'the first and the last step carry latents for a preview');
    const parameters = result.images.map((image) => readTextChunks(Buffer.from(image.png))['parameters']);
    assert.match(parameters[1]!, /^a tiny test\nNegative prompt: noise\nSteps: 3, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 64x64, Model: tiny-sd$/);
    assert.ok(result.images.every((image) => typeof image.nsfw === 'boolean'), 'the safety checker ran');

    // The second image alone, from its own seed, is the same PNG (batching changes no value on ORT's CPU kernels).
    const alone = await generator.generate({ ...request, seed: 42n, count: 1 }, { signal: new AbortController().signal });
    assert.ok(Buffer.from(alone.images[0]!.png).equals(Buffer.from(result.images[1]!.png)));
  });

  test('PNDM makes one more UNet call than steps; progress still counts the steps asked for', async () => {
    const generator = new PipelineImageGenerator(pipeline, { safetyCheck: false });
    const progress: GenerationProgress[] = [];
    await generator.generate({ ...request, scheduler: 'pndm', count: 1 }, { signal: new AbortController().signal, onProgress: (p) => void progress.push({ ...p }) });
    assert.equal(progress.length, 4, 'PNDM ran steps + 1 UNet calls');
    assert.ok(progress.every((p) => p.totalSteps === 3 && p.step >= 1 && p.step <= 3), JSON.stringify(progress.map((p) => `${p.step}/${p.totalSteps}`)));
    assert.equal(progress.at(-1)?.step, 3);
  });

  test('latents for previews are handed over at most once per interval, and on the last step', async () => {
    const generator = new PipelineImageGenerator(pipeline, { safetyCheck: false, previewIntervalMs: 3_600_000 });
    const progress: GenerationProgress[] = [];
    await generator.generate(request, { signal: new AbortController().signal, onProgress: (p) => void progress.push({ ...p }) });
    assert.deepEqual(progress.map((p) => p.step), [1, 2, 3], 'every step is still reported');
    assert.deepEqual(progress.filter((p) => p.latents).map((p) => p.step), [1, 3]);
  });

  test('a Karras sampler reaches the pipeline: other sigmas, other pixels, "DPM++ 2M Karras" in the PNG', async () => {
    const generator = new PipelineImageGenerator(pipeline, { safetyCheck: false });
    const signal = new AbortController().signal;
    const one = { ...request, scheduler: 'dpmpp_2m' as const, count: 1 };
    const [karras, plain] = await Promise.all([generator.generate({ ...one, karras: true }, { signal }), generator.generate(one, { signal })]);
    const parametersOf = (png: Uint8Array) => readTextChunks(Buffer.from(png))['parameters']!;
    assert.match(parametersOf(karras.images[0]!.png), /Sampler: DPM\+\+ 2M Karras, /);
    // A job stored before Karras samplers existed has no `karras`: the model's own scheduler config decides (plain).
    assert.match(parametersOf(plain.images[0]!.png), /Sampler: DPM\+\+ 2M, /);
    const pixelsOf = (png: Uint8Array) => sharp(Buffer.from(png)).raw().toBuffer();
    assert.ok(!(await pixelsOf(karras.images[0]!.png)).equals(await pixelsOf(plain.images[0]!.png)), 'Karras sigmas change the pixels');
  });

  test('an upscale job (hires fix): the init image reaches the pipeline, twice the size, "Denoising strength: 0.5" in the PNG', async () => {
    const generator = new PipelineImageGenerator(pipeline, { safetyCheck: false });
    const signal = new AbortController().signal;
    const original = await generator.generate({ ...request, count: 1, steps: 4 }, { signal });
    const progress: GenerationProgress[] = [];
    const upscale: GenerationRequest = {
      ...request,
      count: 1,
      steps: 4,
      width: request.width * HIRES_FIX_SCALE,
      height: request.height * HIRES_FIX_SCALE,
      initImage: { data: original.images[0]!.png, strength: HIRES_FIX_STRENGTH },
    };
    const result = await generator.generate(upscale, { signal, onProgress: (p) => void progress.push({ ...p }) });
    const image = result.images[0]!;
    const meta = await sharp(Buffer.from(image.png)).metadata();
    assert.deepEqual([meta.width, meta.height], [128, 128]);
    assert.match(readTextChunks(Buffer.from(image.png))['parameters']!, /Seed: 41, Size: 128x128, Model: tiny-sd, Denoising strength: 0\.5$/);
    assert.equal(progress.at(-1)?.step, 4, 'progress ends at the steps asked for (2 of 4 ran)');
  });

  test('stops between steps when the job is cancelled', async () => {
    const generator = new PipelineImageGenerator(pipeline, { safetyCheck: false });
    const controller = new AbortController();
    let steps = 0;
    await assert.rejects(
      generator.generate({ ...request, steps: 20 }, {
        signal: controller.signal,
        onProgress: () => {
          steps += 1;
          if (steps === 2) controller.abort();
        },
      }),
      CancelledError,
    );
    assert.ok(steps < 20, `stopped after ${steps} steps`);
  });

  test('seeds wrap inside the 64-bit range', () => {
    assert.equal(offsetSeed((1n << 64n) - 1n, 1), 0n);
    assert.equal(offsetSeed(5n, 3), 8n);
  });
});
