import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { GenerateOptions, GenerationRequest, GenerationResult, StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import type { SchedulerName } from '../../src/diffusion/schedulers/types.js';
import type { ClipTokenizer } from '../../src/diffusion/tokenizer.js';
import { loadPipeline } from '../../src/diffusion/load.js';
import { PROJECT_ROOT } from '../../src/util/project.js';

export const FIXTURES = join(PROJECT_ROOT, 'test/fixtures');
export const TINY_MODEL = join(FIXTURES, 'tiny-sd');
export const REFERENCE = join(FIXTURES, 'reference');

/**
 * The tiny model on the CPU without its safety checker, loaded before the tests of the suite (or file) this is called
 * in and released after them. Returns the pipeline, valid inside those tests.
 */
export function tinyPipelineForSuite(): () => StableDiffusionPipeline {
  let pipeline: StableDiffusionPipeline | undefined;
  before(async () => {
    pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false });
  });
  after(async () => {
    await pipeline?.release();
    await pipeline?.model.release();
  });
  return () => {
    if (!pipeline) throw new Error('the tiny pipeline is loaded in before(): use it inside a test');
    return pipeline;
  };
}

/** One of diffusers' reference runs (test/fixtures/reference/cases/<id>/case.json). */
export interface ReferenceCase {
  id: string;
  prompt: string;
  negative: string;
  seed: number;
  steps: number;
  cfg: number;
  height: number;
  width: number;
  /** Our scheduler id in the reference's naming (e.g. dpmpp_2m_karras). */
  scheduler: string;
  rng: 'cpu' | 'cuda';
  n: number;
  scheduler_overrides: Record<string, unknown>;
  input_ids: number[][] | number[];
  negative_input_ids: number[][] | number[];
  timesteps: number[];
  latent_shape: [number, number, number, number];
  image_shape: [number, number, number, number];
  nsfw: boolean[];
  clip_input_mean: number;
}

export function caseIds(): string[] {
  return readdirSync(join(REFERENCE, 'cases')).sort();
}

export function loadCase(id: string): ReferenceCase {
  return JSON.parse(readFileSync(join(REFERENCE, 'cases', id, 'case.json'), 'utf8')) as ReferenceCase;
}

/** Raw little-endian float32 data, as the reference .f32 files are written. */
export function readF32(id: string, name: string): Float32Array {
  const bytes = readFileSync(join(REFERENCE, 'cases', id, name));
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/** Decoded 8-bit RGB of a reference PNG. */
export async function readReferencePng(id: string, index: number): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(join(REFERENCE, 'cases', id, `image_${index}.png`)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { rgb: new Uint8Array(data), width: info.width, height: info.height };
}

export function maxAbs(values: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]!));
  return max;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Fraction of 8-bit values within ±tolerance of the reference. */
export function fractionWithin(actual: Uint8Array, expected: Uint8Array, tolerance: number): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let ok = 0;
  for (let i = 0; i < actual.length; i++) if (Math.abs(actual[i]! - expected[i]!) <= tolerance) ok++;
  return ok / actual.length;
}

// ───────────────────────────── running a reference case through the pipeline ─────────────────────────────

/** The reference names Karras DPM++ as its own scheduler; for us it is dpmpp_2m with the karras option. */
export function schedulerOf(reference: ReferenceCase): { scheduler: SchedulerName; karras: boolean } {
  if (reference.scheduler === 'dpmpp_2m_karras') return { scheduler: 'dpmpp_2m', karras: true };
  return { scheduler: reference.scheduler as SchedulerName, karras: Boolean(reference.scheduler_overrides['use_karras_sigmas']) };
}

/** The generation request diffusers ran for a reference case. */
export function requestFor(reference: ReferenceCase): GenerationRequest {
  return {
    prompt: reference.prompt,
    negativePrompt: reference.negative,
    seed: BigInt(reference.seed),
    steps: reference.steps,
    cfg: reference.cfg,
    width: reference.width,
    height: reference.height,
    ...schedulerOf(reference),
    rng: reference.rng,
    batch: reference.n,
  };
}

/** Token ids for the prompt and the (possibly empty) negative prompt, padded to 77 with 49407, as diffusers gives them. */
export function assertTokenIds(tokenizer: ClipTokenizer, reference: ReferenceCase): void {
  const firstRow = (ids: number[][] | number[]): number[] => (Array.isArray(ids[0]) ? (ids as number[][])[0]! : (ids as number[]));
  assert.deepEqual(Array.from(tokenizer.encode(reference.prompt)), firstRow(reference.input_ids));
  assert.deepEqual(Array.from(tokenizer.encode(reference.negative)), firstRow(reference.negative_input_ids));
}

export interface ReferenceRun {
  reference: ReferenceCase;
  result: GenerationResult;
  /** A copy of the latents after the first step. */
  step1: Float32Array;
}

/**
 * Generates a reference case with diffusers' settings (a case id, or a case changed by the test), keeping the latents
 * after step 1, and checks what does not depend on numerics: the latent shape, the timesteps (within 1e-3) and the
 * number of images. `options` go to `generate`; an `onProgress` among them still sees every progress call.
 */
export async function runReferenceCase(
  pipeline: StableDiffusionPipeline,
  caseOrId: ReferenceCase | string,
  options: GenerateOptions = {},
): Promise<ReferenceRun> {
  const reference = typeof caseOrId === 'string' ? loadCase(caseOrId) : caseOrId;
  let step1: Float32Array | undefined;
  const result = await pipeline.generate(requestFor(reference), {
    ...options,
    onProgress: (progress) => {
      if (progress.step === 1) step1 = Float32Array.from(progress.latents);
      return options.onProgress?.(progress);
    },
  });
  assert.ok(step1, 'progress callback saw step 1');
  assert.deepEqual(result.latentShape, reference.latent_shape);
  assert.equal(result.timesteps.length, reference.timesteps.length);
  assert.ok(maxAbsDiff(result.timesteps, reference.timesteps) < 1e-3, 'timesteps differ from diffusers');
  assert.equal(result.images.length, reference.n);
  return { reference, result, step1 };
}

/** How far a run is from diffusers' reference. */
export interface ReferenceDeviation {
  /** max |ours − diffusers'| over the latents after step 1 and after the last step … */
  step1Diff: number;
  finalDiff: number;
  /** … diffusers' largest magnitude there … */
  step1Magnitude: number;
  finalMagnitude: number;
  /** … and the one as a fraction of the other. */
  step1: number;
  final: number;
  /** Per image: fraction of 8-bit values within ±1, and the largest difference in levels. */
  images: { withinOne: number; maxLevels: number }[];
}

/** Measures a run against diffusers' latents and images (asserting each image has the reference's size). */
export async function measureAgainstReference(run: ReferenceRun): Promise<ReferenceDeviation> {
  const id = run.reference.id;
  const expectedStep1 = readF32(id, 'latents_step1.f32');
  const expectedFinal = readF32(id, 'latents_final.f32');
  const images = [];
  for (const image of run.result.images) {
    const expected = await readReferencePng(id, image.index);
    assert.equal(image.width, expected.width);
    assert.equal(image.height, expected.height);
    images.push({ withinOne: fractionWithin(image.rgb, expected.rgb, 1), maxLevels: maxAbsDiff(image.rgb, expected.rgb) });
  }
  const step1Diff = maxAbsDiff(run.step1, expectedStep1);
  const finalDiff = maxAbsDiff(run.result.latents, expectedFinal);
  const step1Magnitude = maxAbs(expectedStep1);
  const finalMagnitude = maxAbs(expectedFinal);
  return { step1Diff, finalDiff, step1Magnitude, finalMagnitude, step1: step1Diff / step1Magnitude, final: finalDiff / finalMagnitude, images };
}

/** One line with every figure of a deviation, for `t.diagnostic`. */
export function describeDeviation(label: string, deviation: ReferenceDeviation): string {
  const images = deviation.images
    .map((image, index) => `image ${index}: ${(image.withinOne * 100).toFixed(3)}% within ±1, max ${image.maxLevels} levels`)
    .join('; ');
  return (
    `${label}: latents after step 1 ${deviation.step1.toExponential(2)}, final ${deviation.final.toExponential(2)} of max magnitude ` +
    `(final max diff ${deviation.finalDiff.toExponential(2)}, max magnitude ${deviation.finalMagnitude.toFixed(3)}); ${images}`
  );
}

export interface ReferenceBounds {
  /** Latents after step 1 and after the last step within this fraction of diffusers' largest magnitude. */
  latentRelative: number;
  /** At least this fraction of each image's 8-bit values within ±1 of diffusers'. */
  withinOne: number;
  /** No 8-bit value further than this from diffusers' (not checked when absent). */
  maxLevels?: number;
  /** Each image's safety verdict equals diffusers' (false for a model without a safety checker, or with it off). */
  safetyVerdicts: boolean;
}

/** The fp32 engine's bounds against diffusers: latents within 1e-3 of their max magnitude, ±1 on ≥ 99.9 % of values. */
export const EXACT_BOUNDS: ReferenceBounds = { latentRelative: 1e-3, withinOne: 0.999, safetyVerdicts: true };

/**
 * fp16 tolerances. The fp16 variant is a true float16 conversion (weights and declared activations; the text encoder
 * stays fp32), so it differs from diffusers' fp32 run by the rounding of every weight to half (relative error
 * ≤ 2^-11 ≈ 4.9e-4 each) and of every tensor crossing a model boundary: the UNet's sample, timestep, text embeddings
 * and noise prediction each step, the VAE's input and output. Measured over all six reference cases (onnxruntime-node
 * 1.30 on CPU, which runs the float16 graph by casting around the ops it has no float16 kernel for): final latents
 * within 5.5e-4 … 1.4e-3 of their largest magnitude (after step 1: 3.4e-4 … 1.1e-3), 100 % of 8-bit values within ±1,
 * none further than 1. The bounds leave ~3.5× room for other CPUs' kernels and ORT releases with more float16 kernels,
 * and still fail on any real dtype mistake (a byte-order or conversion error, or float32 bits fed as halves, moves
 * latents by whole units and pixels by tens of levels).
 */
export const FP16_BOUNDS: ReferenceBounds = { latentRelative: 5e-3, withinOne: 0.995, maxLevels: 3, safetyVerdicts: true };

/** Holds a measured run to `bounds`; `label` names the run in failure messages. */
export function assertWithinReference(run: ReferenceRun, deviation: ReferenceDeviation, bounds: ReferenceBounds, label: string): void {
  const { step1Diff, step1Magnitude, finalDiff, finalMagnitude } = deviation;
  const step1Tolerance = bounds.latentRelative * step1Magnitude;
  assert.ok(step1Diff <= step1Tolerance, `${label}: latents after step 1 differ by ${step1Diff} (tolerance ${step1Tolerance})`);
  const finalTolerance = bounds.latentRelative * finalMagnitude;
  assert.ok(finalDiff <= finalTolerance, `${label}: final latents differ by ${finalDiff} (tolerance ${finalTolerance})`);
  for (const [index, image] of deviation.images.entries()) {
    assert.ok(image.withinOne >= bounds.withinOne, `${label} image ${index}: only ${(image.withinOne * 100).toFixed(3)}% of values within ±1`);
    if (bounds.maxLevels !== undefined) assert.ok(image.maxLevels <= bounds.maxLevels, `${label} image ${index}: a value is ${image.maxLevels} levels off`);
    if (bounds.safetyVerdicts) assert.equal(run.result.images[index]!.nsfw, run.reference.nsfw[index], `${label}: safety verdict of image ${index}`);
  }
}
