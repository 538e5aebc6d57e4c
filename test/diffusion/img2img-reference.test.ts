/**
 * img2img against diffusers' own StableDiffusionImg2ImgPipeline over the tiny model (test/fixtures/reference/img2img,
 * made by scripts/make-img2img-references.py): strengths 0.3 … 1, PNDM, Euler a and DPM++ 2M, the CPU and CUDA
 * generators, CFG on and off, one generator for a batch and a list of seeds. Each case must match within the txt2img
 * bounds: latents after the first and the last step within 1e-3 of their largest magnitude, and every image's 8-bit
 * values within ±1 on ≥ 99.9 %.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import type { GenerationRequest } from '../../src/diffusion/pipeline.js';
import type { SchedulerName } from '../../src/diffusion/schedulers/types.js';
import { EXACT_BOUNDS, fractionWithin, maxAbs, maxAbsDiff, REFERENCE, tinyPipelineForSuite } from '../helpers/reference.js';

const FOLDER = join(REFERENCE, 'img2img');

interface Img2ImgCase {
  id: string;
  prompt: string;
  negative: string;
  input_ids: number[];
  scheduler: SchedulerName;
  rng: 'cpu' | 'cuda';
  seed: number | number[];
  num_images_per_prompt: number;
  n: number;
  steps: number;
  cfg: number;
  strength: number;
  width: number;
  height: number;
  timesteps: number[];
  denoising_steps: number;
  latent_shape: [number, number, number, number];
}

function readCase(id: string): Img2ImgCase {
  return JSON.parse(readFileSync(join(FOLDER, id, 'case.json'), 'utf8')) as Img2ImgCase;
}

function readF32(id: string, name: string): Float32Array {
  const bytes = readFileSync(join(FOLDER, id, name));
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

async function readPng(path: string): Promise<Uint8Array> {
  const { data } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

/** The request diffusers' pipeline ran: a list of seeds for a list of generators, else one seed and the batch. */
function requestFor(reference: Img2ImgCase): GenerationRequest {
  return {
    prompt: reference.prompt,
    negativePrompt: reference.negative,
    seed: Array.isArray(reference.seed) ? reference.seed.map(BigInt) : BigInt(reference.seed),
    ...(Array.isArray(reference.seed) ? {} : { batch: reference.num_images_per_prompt }),
    steps: reference.steps,
    cfg: reference.cfg,
    width: reference.width,
    height: reference.height,
    scheduler: reference.scheduler,
    rng: reference.rng,
    safetyCheck: false,
    initImage: { data: new Uint8Array(readFileSync(join(FOLDER, reference.id, 'init.png'))), strength: reference.strength },
  };
}

const ids = readdirSync(FOLDER).filter((name) => /^i\d+$/.test(name)).sort();

describe("img2img matches diffusers' StableDiffusionImg2ImgPipeline", () => {
  const pipeline = tinyPipelineForSuite();

  test('the cases cover what issue 15 asks: several strengths, two+ schedulers, both generators, CFG on and off, a list of seeds', () => {
    const cases = ids.map(readCase);
    assert.ok(new Set(cases.map((c) => c.strength)).size >= 4);
    assert.ok(new Set(cases.map((c) => c.scheduler)).size >= 2);
    assert.deepEqual(new Set(cases.map((c) => c.rng)), new Set(['cpu', 'cuda']));
    assert.ok(cases.some((c) => c.cfg <= 1) && cases.some((c) => c.cfg > 1));
    assert.ok(cases.some((c) => Array.isArray(c.seed)) && cases.some((c) => !Array.isArray(c.seed) && c.num_images_per_prompt > 1));
  });

  for (const id of ids) {
    const reference = readCase(id);
    const label = `${id}: ${reference.scheduler}, ${reference.rng}, seed ${JSON.stringify(reference.seed)}, strength ${reference.strength}, cfg ${reference.cfg}`;
    test(label, async (t) => {
      let step1: Float32Array | undefined;
      const result = await pipeline().generate(requestFor(reference), {
        onProgress: (progress) => {
          if (progress.step === 1) step1 = Float32Array.from(progress.latents);
        },
      });
      assert.deepEqual(result.latentShape, reference.latent_shape);
      assert.equal(result.timesteps.length, reference.denoising_steps, 'the steps strength keeps');
      assert.ok(maxAbsDiff(result.timesteps, reference.timesteps) < 1e-3, 'timesteps differ from diffusers');
      assert.ok(step1);
      const expectedStep1 = readF32(id, 'latents_step1.f32');
      const expectedFinal = readF32(id, 'latents_final.f32');
      const step1Relative = maxAbsDiff(step1, expectedStep1) / maxAbs(expectedStep1);
      const finalRelative = maxAbsDiff(result.latents, expectedFinal) / maxAbs(expectedFinal);
      const within: number[] = [];
      for (const image of result.images) within.push(fractionWithin(image.rgb, await readPng(join(FOLDER, id, `image_${image.index}.png`)), 1));
      t.diagnostic(`latents after step 1 ${step1Relative.toExponential(2)}, final ${finalRelative.toExponential(2)} of max magnitude; within ±1: ${within.map((w) => (w * 100).toFixed(3) + '%').join(', ')}`);
      assert.equal(result.images.length, reference.n);
      assert.ok(step1Relative <= EXACT_BOUNDS.latentRelative, `latents after step 1: ${step1Relative}`);
      assert.ok(finalRelative <= EXACT_BOUNDS.latentRelative, `final latents: ${finalRelative}`);
      for (const [index, fraction] of within.entries()) assert.ok(fraction >= EXACT_BOUNDS.withinOne, `image ${index}: ${(fraction * 100).toFixed(3)}% within ±1`);
    });
  }
});
