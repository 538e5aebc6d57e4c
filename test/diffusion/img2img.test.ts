/**
 * img2img in the engine, apart from the diffusers reference cases (img2img-reference.test.ts): the request's checks,
 * the VAE encoder's load-time rewrite, the init image's resize, the schedule tail strength keeps, the device loop,
 * per-image seeds, and the hires-fix request.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { InvalidRequestError } from '../../src/diffusion/errors.js';
import { img2imgTimesteps } from '../../src/diffusion/img2img.js';
import { graphOpTypes } from '../../src/diffusion/onnx-proto.js';
import { HIRES_FIX_STRENGTH, hiresFixRequest, validateRequest, type GenerationRequest } from '../../src/diffusion/pipeline.js';
import { createScheduler } from '../../src/diffusion/schedulers/index.js';
import { SCHEDULER_NAMES } from '../../src/diffusion/schedulers/types.js';
import { exposeLatentParameters, LATENT_PARAMETERS_OUTPUT, VaeEncoderRewriteError } from '../../src/diffusion/vae-encode.js';
import { FIXTURES, FP16_BOUNDS, maxAbs, maxAbsDiff, TINY_MODEL, tinyPipelineForSuite } from '../helpers/reference.js';
import { loadPipeline } from '../../src/diffusion/load.js';

const SD15_SCHEDULER = JSON.parse(readFileSync(join(TINY_MODEL, 'scheduler/scheduler_config.json'), 'utf8')) as Record<string, unknown>;

async function solidPng(width: number, height: number, colour = { r: 200, g: 40, b: 90 }): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width, height, channels: 3, background: colour } }).png().toBuffer());
}

function img2imgRequest(data: Uint8Array, overrides: Partial<GenerationRequest> = {}): GenerationRequest {
  return { prompt: 'a red square', seed: 7n, steps: 10, cfg: 7, width: 64, height: 64, scheduler: 'euler', initImage: { data, strength: 0.6 }, ...overrides };
}

describe('img2img requests are checked before any work', () => {
  const data = new Uint8Array([1, 2, 3]);
  for (const strength of [0, -0.5, 1.01, Number.NaN, Number.POSITIVE_INFINITY]) {
    test(`strength ${strength} is refused with one sentence`, () => {
      assert.throws(() => validateRequest(img2imgRequest(data, { initImage: { data, strength } })), (error: unknown) => {
        assert.ok(error instanceof InvalidRequestError);
        assert.match(error.message, /^strength must be a number greater than 0 and at most 1 \(got .+\)\.$/);
        return true;
      });
    });
  }
  test('strength 1 and a tiny positive strength with enough steps pass', () => {
    validateRequest(img2imgRequest(data, { initImage: { data, strength: 1 } }));
    validateRequest(img2imgRequest(data, { steps: 100, initImage: { data, strength: 0.01 } }));
  });
  test('a strength that keeps less than one step is refused (diffusers would have no timestep to noise to)', () => {
    assert.throws(() => validateRequest(img2imgRequest(data, { steps: 10, initImage: { data, strength: 0.05 } })), /less than one step/);
  });
  test('an empty image is refused', () => {
    assert.throws(() => validateRequest(img2imgRequest(new Uint8Array(0))), /init image is empty/);
  });
});

describe('get_timesteps: the tail of the schedule strength keeps', () => {
  test('Euler, 10 steps at 0.6: the last 6 timesteps, begin index 4', () => {
    const scheduler = createScheduler('euler', SD15_SCHEDULER);
    scheduler.setTimesteps(10);
    const all = Float64Array.from(scheduler.timesteps);
    assert.deepEqual(Array.from(img2imgTimesteps(scheduler, 10, 0.6)), Array.from(all.slice(4)));
  });
  test('int(steps · strength) truncates as Python does: 30 × 0.75 = 22.5 keeps 22 steps', () => {
    const scheduler = createScheduler('ddim', SD15_SCHEDULER);
    scheduler.setTimesteps(30);
    assert.equal(img2imgTimesteps(scheduler, 30, 0.75).length, 22);
  });
  test('Heun (order 2) starts at t_start · 2 of its doubled timesteps', () => {
    const scheduler = createScheduler('heun', SD15_SCHEDULER);
    scheduler.setTimesteps(10);
    const all = Float64Array.from(scheduler.timesteps);
    assert.equal(all.length, 19);
    assert.deepEqual(Array.from(img2imgTimesteps(scheduler, 10, 0.5)), Array.from(all.slice(10)));
  });
  test('strength 1 keeps the whole schedule', () => {
    for (const name of SCHEDULER_NAMES) {
      const scheduler = createScheduler(name, SD15_SCHEDULER);
      scheduler.setTimesteps(8);
      const all = Float64Array.from(scheduler.timesteps);
      assert.deepEqual(Array.from(img2imgTimesteps(scheduler, 8, 1)), Array.from(all), name);
    }
  });
});

describe('the VAE encoder rewrite', () => {
  const original = new Uint8Array(readFileSync(join(TINY_MODEL, 'vae_encoder/model.onnx')));

  test('outputs quant_conv\'s moments as latent_parameters through one added Identity node', () => {
    const rewritten = exposeLatentParameters(original);
    const before = graphOpTypes(original);
    const after = graphOpTypes(rewritten);
    assert.deepEqual(after.slice(0, before.length), before, 'the export\'s nodes are kept as they are');
    assert.deepEqual(after.slice(before.length), ['Identity']);
    assert.ok(new TextDecoder().decode(rewritten).includes(LATENT_PARAMETERS_OUTPUT));
  });

  test('an encoder that already outputs latent_parameters is taken as it is', () => {
    const rewritten = exposeLatentParameters(original);
    assert.equal(exposeLatentParameters(rewritten), rewritten);
  });

  test('a graph without a quant_conv node is refused with a reason', () => {
    const unet = new Uint8Array(readFileSync(join(TINY_MODEL, 'text_encoder/model.onnx')));
    assert.throws(() => exposeLatentParameters(unet), VaeEncoderRewriteError);
  });
});

describe('img2img through the tiny pipeline', () => {
  const pipeline = tinyPipelineForSuite();

  test('the loaded encoder outputs the 8-channel moments, and the same seed gives the same image', async () => {
    const data = await solidPng(64, 64);
    const first = await pipeline().generate(img2imgRequest(data));
    const encoder = pipeline().model.vaeEncoder;
    assert.ok(encoder?.outputs.has(LATENT_PARAMETERS_OUTPUT), 'the encoder was opened on first use, rewritten');
    const again = await pipeline().generate(img2imgRequest(data));
    assert.deepEqual(again.latents, first.latents, 'no randomness but the request\'s generator');
    const otherSeed = await pipeline().generate(img2imgRequest(data, { seed: 8n }));
    assert.ok(maxAbsDiff(otherSeed.latents, first.latents) > 0.01);
    assert.equal(first.timesteps.length, 6);
  });

  test('the image steers the result: two init images give different latents for one seed', async () => {
    const red = await pipeline().generate(img2imgRequest(await solidPng(64, 64), { initImage: { data: await solidPng(64, 64), strength: 0.3 } }));
    const blue = await pipeline().generate(img2imgRequest(await solidPng(64, 64), { initImage: { data: await solidPng(64, 64, { r: 0, g: 0, b: 255 }), strength: 0.3 } }));
    assert.ok(maxAbsDiff(red.latents, blue.latents) > 0.01);
  });

  test('an image of another size is resized to the request\'s size', async () => {
    const result = await pipeline().generate(img2imgRequest(await solidPng(100, 37), { width: 64, height: 128 }));
    assert.equal(result.images[0]!.width, 64);
    assert.equal(result.images[0]!.height, 128);
    assert.deepEqual(result.latentShape, [1, 4, 16, 8]);
  });

  test('RGBA, greyscale and 16-bit images are read as 8-bit RGB (alpha dropped), like their RGB twin', async () => {
    const rgb = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 120, g: 120, b: 120 } } }).png().toBuffer();
    const rgba = await sharp({ create: { width: 64, height: 64, channels: 4, background: { r: 120, g: 120, b: 120, alpha: 0.5 } } }).png().toBuffer();
    const grey = await sharp(rgb).greyscale().png().toBuffer();
    const deep = await sharp(rgb).toColourspace('rgb16').png().toBuffer();
    const latentsOf = async (png: Buffer) => (await pipeline().generate(img2imgRequest(new Uint8Array(png), { steps: 2, initImage: { data: new Uint8Array(png), strength: 0.5 } }))).latents;
    const expected = await latentsOf(rgb);
    for (const [label, png] of [['RGBA', rgba], ['greyscale', grey], ['16-bit', deep]] as const) {
      assert.ok(maxAbsDiff(await latentsOf(png), expected) < 1e-5, label);
    }
  });

  test('bytes that are no image are a one-line InvalidRequestError', async () => {
    await assert.rejects(pipeline().generate(img2imgRequest(new Uint8Array([1, 2, 3, 4]))), (error: unknown) => {
      assert.ok(error instanceof InvalidRequestError);
      assert.match(error.message, /^the init image could not be read/);
      assert.ok(!error.message.includes('\n'));
      return true;
    });
  });

  test('a list of seeds: each image equals its seed alone (the latent sample and the noise per generator)', async () => {
    const data = await solidPng(64, 64);
    const pair = await pipeline().generate(img2imgRequest(data, { seed: [11n, 12n], scheduler: 'euler_a' }));
    const perImage = pair.latents.length / 2;
    for (const [index, seed] of [11n, 12n].entries()) {
      const alone = await pipeline().generate(img2imgRequest(data, { seed, scheduler: 'euler_a' }));
      assert.ok(maxAbsDiff(pair.latents.subarray(index * perImage, (index + 1) * perImage), alone.latents) < 1e-4, `image ${index}`);
    }
  });

  test('one seed for a batch: one latent sample repeated, the noise drawn for the whole batch', async () => {
    const data = await solidPng(64, 64);
    const batch = await pipeline().generate(img2imgRequest(data, { batch: 2 }));
    const perImage = batch.latents.length / 2;
    assert.ok(maxAbsDiff(batch.latents.subarray(0, perImage), batch.latents.subarray(perImage)) > 0.01, 'the images differ by their noise');
  });

  test('hires fix: a 64×64 result upscaled and repainted at 128×128', async () => {
    const original: GenerationRequest = { prompt: 'castle', seed: 3n, steps: 4, cfg: 7, width: 64, height: 64, scheduler: 'euler' };
    const small = (await pipeline().generate(original)).images[0]!;
    const png = new Uint8Array(await sharp(small.rgb, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer());
    const upscaled = await pipeline().generate(hiresFixRequest(original, png));
    assert.equal(upscaled.images[0]!.width, 128);
    assert.equal(upscaled.images[0]!.height, 128);
    assert.equal(upscaled.timesteps.length, 2, 'strength 0.5 of 4 steps');
  });

  for (const scheduler of ['euler', 'euler_a', 'ddim'] as const) {
    test(`${scheduler}: the device loop starts where the JS loop does (same latents)`, async () => {
      const data = await solidPng(64, 64);
      const request = img2imgRequest(data, { scheduler });
      const js = await pipeline().generate(request, { deviceLoop: 'never' });
      const device = await pipeline().generate(request, { deviceLoop: 'always' });
      assert.equal(device.loop, 'device');
      assert.ok(maxAbsDiff(device.latents, js.latents) < 1e-4);
    });
  }
});

describe('img2img on the other exports', () => {
  test('fp16 (a float16 VAE encoder) and optimum\'s layout: the rewrite finds quant_conv, the result follows fp32\'s', async () => {
    const data = new Uint8Array(readFileSync(join(FIXTURES, 'reference/img2img/i2/init.png')));
    const request = img2imgRequest(data, { scheduler: 'euler_a' });
    const results: Record<string, Float32Array> = {};
    for (const variant of ['tiny-sd', 'variants/fp16', 'variants/optimum-layout']) {
      const pipeline = await loadPipeline(join(FIXTURES, variant), { provider: 'cpu', safetyChecker: false });
      try {
        results[variant] = (await pipeline.generate(request)).latents;
        assert.ok(pipeline.model.vaeEncoder?.outputs.has(LATENT_PARAMETERS_OUTPUT), variant);
      } finally {
        await pipeline.release();
        await pipeline.model.release();
      }
    }
    const fp32 = results['tiny-sd']!;
    assert.deepEqual(results['variants/optimum-layout'], fp32, 'the same weights in optimum\'s layout');
    assert.ok(maxAbsDiff(results['variants/fp16']!, fp32) <= FP16_BOUNDS.latentRelative * maxAbs(fp32), 'fp16 within the fp16 bounds');
  });
});

describe('hiresFixRequest: A1111\'s hires fix ×2 as an img2img request', () => {
  const original: GenerationRequest = { prompt: 'castle', negativePrompt: 'blur', seed: [5n, 6n, 7n], steps: 20, cfg: 6, width: 64, height: 96, scheduler: 'dpmpp_2m', karras: true, clipSkip: 2 };

  test('image 2 of a job: its own seed, twice the size, strength 0.5, the same prompt and settings, one image', () => {
    const png = new Uint8Array([9]);
    const request = hiresFixRequest(original, png, 1);
    assert.deepEqual(request, {
      prompt: 'castle',
      negativePrompt: 'blur',
      seed: 6n,
      steps: 20,
      cfg: 6,
      width: 128,
      height: 192,
      scheduler: 'dpmpp_2m',
      karras: true,
      clipSkip: 2,
      initImage: { data: png, strength: HIRES_FIX_STRENGTH },
    });
    assert.equal(HIRES_FIX_STRENGTH, 0.5);
  });

});
