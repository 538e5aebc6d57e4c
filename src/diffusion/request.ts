/** What a caller asks the engine for, the limits it must keep within, and the latent tensor it makes. */
import { MAX_CLIP_SKIP } from './clip-skip.js';
import { InvalidRequestError } from './errors.js';
import { PROMPT_SYNTAXES, type PromptSyntax } from './prompt/index.js';
import { MAX_SEED, type RngDevice } from './rng/types.js';
import type { SchedulerName, TimestepSpacing } from './schedulers/types.js';

/**
 * An image to start from (img2img, diffusers' StableDiffusionImg2ImgPipeline): it is VAE-encoded, noised to the
 * timestep `strength` picks, and denoised from there. The output keeps the request's `width`×`height`; an image of
 * another size is first resized to it (sharp, Lanczos, as diffusers' image processor resizes to the asked size).
 */
export interface InitImage {
  /** The encoded image: PNG, JPEG, WebP, … anything sharp reads. Its alpha channel, if any, is dropped. */
  data: Uint8Array;
  /**
   * How much of the image is repainted, in (0, 1] (diffusers' `strength`, A1111's "denoising strength"): the loop
   * runs the last `min(floor(steps · strength), steps)` of its timesteps; 1 starts from (almost) pure noise.
   */
  strength: number;
}

/** diffusers' default img2img strength (and `generate --strength`'s). */
export const DEFAULT_STRENGTH = 0.75;

export interface GenerationRequest {
  prompt: string;
  /** Empty string when none, as diffusers does for the unconditional half. */
  negativePrompt?: string;
  /**
   * One seed: one generator, seeded with it, draws the noise of the whole batch (`batch` images, diffusers'
   * `num_images_per_prompt`). A list: one generator per image, image i's seeded with `seed[i]` (diffusers' list of
   * generators, rng/per-image.ts), so each image equals the one its seed makes alone; the batch is the list's length.
   */
  seed: bigint | readonly bigint[];
  steps: number;
  /** Classifier-free guidance scale; ≤ 1 runs the UNet on the prompt alone, as diffusers does. */
  cfg: number;
  width: number;
  height: number;
  /** Defaults to the scheduler named by the model's scheduler_config.json. */
  scheduler?: SchedulerName;
  karras?: boolean;
  timestepSpacing?: TimestepSpacing;
  /** Which torch generator the noise reproduces (default cpu, as diffusers recommends for reproducibility). */
  rng?: RngDevice;
  /**
   * Images per prompt, drawn from one generator as one (n, 4, h, w) tensor, like diffusers' num_images_per_prompt.
   * With a list of seeds, leave it out (or give the list's length).
   */
  batch?: number;
  /** Run the model's safety checker when it has one (default true). */
  safetyCheck?: boolean;
  /**
   * How the prompts become text-encoder input (prompt/index.ts): `plain` (default) is diffusers' literal text cut at
   * 77 tokens, bit for bit as diffusers; `a1111` is A1111's weights, BREAK and 75-token chunks (sequence 77·k).
   */
  promptSyntax?: PromptSyntax;
  /** A1111's clip skip (clip-skip.ts): 1 (default) = the text encoder's last layer, 2 = the one before it. */
  clipSkip?: number;
  /** Start from this image instead of pure noise (img2img); every image of the batch starts from it. */
  initImage?: InitImage;
}

export const DEFAULT_STEPS = 30;
export const DEFAULT_CFG = 7;
export const MAX_BATCH = 8;
export const MAX_STEPS = 1000;
const MAX_PIXELS = 2048 * 2048;

/** Checks a request before any work starts, so every mistake is one clear sentence. */
export function validateRequest(request: GenerationRequest): void {
  const { width, height, steps, cfg } = request;
  const seeds = typeof request.seed === 'bigint' ? [request.seed] : request.seed;
  if (!Array.isArray(seeds) || seeds.some((seed) => typeof seed !== 'bigint' || seed < 0n || seed > MAX_SEED)) throw new InvalidRequestError(`seed must be a whole number from 0 to ${MAX_SEED}.`);
  if (seeds.length === 0) throw new InvalidRequestError('a list of seeds needs at least one seed.');
  if (typeof request.seed !== 'bigint' && request.batch !== undefined && request.batch !== seeds.length) {
    throw new InvalidRequestError(`batch (${request.batch}) must equal the number of seeds (${seeds.length}) when each image has its own seed.`);
  }
  const batch = imageCountOf(request);
  for (const [label, value] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(value) || value <= 0) throw new InvalidRequestError(`${label} must be a positive whole number of pixels (got ${value}).`);
    if (value % 8 !== 0) throw new InvalidRequestError(`${label} must be a multiple of 8 (got ${value}).`);
    if (value < 64) throw new InvalidRequestError(`${label} must be at least 64 pixels (got ${value}).`);
  }
  if (width * height > MAX_PIXELS) throw new InvalidRequestError(`${width}x${height} is too large (at most ${MAX_PIXELS} pixels).`);
  if (!Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS) throw new InvalidRequestError(`steps must be a whole number from 1 to ${MAX_STEPS} (got ${steps}).`);
  if (!Number.isFinite(cfg) || cfg < 0 || cfg > 100) throw new InvalidRequestError(`cfg must be a number from 0 to 100 (got ${cfg}).`);
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) throw new InvalidRequestError(`batch must be a whole number from 1 to ${MAX_BATCH} (got ${batch}).`);
  if (typeof request.prompt !== 'string') throw new InvalidRequestError('prompt must be text.');
  if (request.promptSyntax !== undefined && !(PROMPT_SYNTAXES as readonly string[]).includes(request.promptSyntax)) {
    throw new InvalidRequestError(`promptSyntax must be one of ${PROMPT_SYNTAXES.join(', ')} (got ${String(request.promptSyntax)}).`);
  }
  const clipSkip = request.clipSkip ?? 1;
  if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > MAX_CLIP_SKIP) {
    throw new InvalidRequestError(`clip skip must be a whole number from 1 to ${MAX_CLIP_SKIP} (got ${clipSkip}).`);
  }
  if (request.initImage !== undefined) {
    validateInitImage(request.initImage);
    // diffusers' get_timesteps keeps int(steps · strength) steps; with none it has no timestep to noise the image to.
    if (Math.floor(steps * request.initImage.strength) < 1) {
      throw new InvalidRequestError(`strength ${request.initImage.strength} of ${steps} steps is less than one step: raise the strength or the steps.`);
    }
  }
}

/** The init image's own checks (its decoding, which needs sharp, fails later with InvalidRequestError too). */
export function validateInitImage(initImage: InitImage): void {
  if (!(initImage.data instanceof Uint8Array) || initImage.data.length === 0) throw new InvalidRequestError('the init image is empty.');
  validateStrength(initImage.strength);
}

/** strength in (0, 1], diffusers' range: 0 would run no step at all. */
export function validateStrength(strength: number): void {
  if (typeof strength !== 'number' || !Number.isFinite(strength) || strength <= 0 || strength > 1) {
    throw new InvalidRequestError(`strength must be a number greater than 0 and at most 1 (got ${String(strength)}).`);
  }
}

/** (batch, 4, height / f, width / f): the latent tensor a request denoises, f being the VAE's scale factor. */
export type LatentShape = readonly [number, number, number, number];

export function latentShapeOf(request: Pick<GenerationRequest, 'width' | 'height' | 'batch'> & Partial<Pick<GenerationRequest, 'seed'>>, vaeScaleFactor: number): LatentShape {
  return [imageCountOf(request), 4, request.height / vaeScaleFactor, request.width / vaeScaleFactor];
}

/** How many images a request makes: one per seed when it lists them, else `batch` (default 1). */
export function imageCountOf(request: Pick<GenerationRequest, 'batch'> & Partial<Pick<GenerationRequest, 'seed'>>): number {
  return request.seed === undefined || typeof request.seed === 'bigint' ? (request.batch ?? 1) : request.seed.length;
}

/**
 * The seed that remakes image `index` alone: its own with a list of seeds; otherwise the batch's one seed (the image
 * is then that seed's image only at its position in a batch of the same size).
 */
export function imageSeedOf(request: Pick<GenerationRequest, 'seed'>, index: number): bigint {
  if (typeof request.seed === 'bigint') return request.seed;
  const seed = request.seed[index];
  if (seed === undefined) throw new RangeError(`the request has no image ${index}`);
  return seed;
}

/**
 * A progress step counted in the steps the caller asked for. PNDM makes steps + 1 UNet calls (its first timestep
 * repeats), so its UNet call k of n maps onto 1…requestedSteps: never "step 31/30".
 */
export function requestedStepOf(step: number, totalSteps: number, requestedSteps: number): number {
  return Math.max(1, Math.round((step * requestedSteps) / totalSteps));
}

/** A1111's hires fix as the bot's `Upscale ×2` runs it: twice the size, repainted at this denoising strength. */
export const HIRES_FIX_SCALE = 2;
export const HIRES_FIX_STRENGTH = 0.5;

/**
 * The img2img request that upscales image `index` of `original` ×2 (A1111's hires fix): the same prompt, settings
 * and that image's seed, at twice the size, starting from `image` (its PNG) at strength 0.5. The pipeline's init-image
 * resize (Lanczos, sharp) does the ×2 upscale before the VAE encodes it. One image, whatever the original's batch.
 */
export function hiresFixRequest(original: GenerationRequest, image: Uint8Array, index = 0): GenerationRequest {
  const { batch: _batch, initImage: _initImage, ...settings } = original;
  return {
    ...settings,
    seed: imageSeedOf(original, index),
    width: original.width * HIRES_FIX_SCALE,
    height: original.height * HIRES_FIX_SCALE,
    initImage: { data: image, strength: HIRES_FIX_STRENGTH },
  };
}
