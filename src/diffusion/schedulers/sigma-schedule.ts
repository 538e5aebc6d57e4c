/**
 * What the sigma-based schedulers (Euler, Euler a, LMS, DPM++ 2M) share: the config keys and checks for their
 * alternative sigma schedules, the training sigmas, the tail of `set_timesteps` (final sigma, init_noise_sigma),
 * the lazy step index with `scale_model_input`, the v-prediction scalars and the per-step noise draw. Each piece
 * keeps diffusers' float32 rounding order, so the tables still match diffusers' to the last bit.
 */
import type { NoiseGenerator } from '../rng/types.js';
import { addNoiseOverSigma } from './add-noise.js';
import { alphasCumprodFrom, type BetaConfig, makeBetas, rescaleZeroTerminalSnr, trainingSigmas } from './betas.js';
import { AlternatingBuffers, sized } from './buffers.js';
import { type PredictionType, requireBoolean, requireOneSigmaSchedule } from './config.js';
import { interpolateAtIndex } from './numpy.js';
import { exponentialSigmas, inputScaleFor, karrasSigmas, logFloat32, scaleBySigma, sigmaToTimestep } from './sigmas.js';
import { initialStepIndex, sigmaSchedulerTimesteps } from './timesteps.js';
import type { TimestepSpacing } from './types.js';

const fround = Math.fround;

/** The alternative sigma schedule switches diffusers gives Euler, LMS and DPM++, with its defaults (all off). */
export interface SigmaScheduleSwitches {
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  use_beta_sigmas: boolean;
}

export const SIGMA_SCHEDULE_DEFAULTS: SigmaScheduleSwitches = {
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
};

/**
 * Checks the Karras / exponential switches (booleans; at most one on, as diffusers requires) and returns whether
 * Karras sigmas are in effect. `use_beta_sigmas` is each scheduler's to reject (we do not implement it).
 */
export function requireSigmaScheduleSwitches(config: SigmaScheduleSwitches): boolean {
  const karras = requireBoolean(config.use_karras_sigmas, 'use_karras_sigmas');
  requireBoolean(config.use_exponential_sigmas, 'use_exponential_sigmas');
  requireOneSigmaSchedule({ use_karras_sigmas: karras, use_exponential_sigmas: config.use_exponential_sigmas });
  return karras;
}

/**
 * alphas_cumprod and the training sigmas of a sigma-based scheduler. With rescale_betas_zero_snr the last ᾱ is
 * set to 2⁻²⁴ as diffusers does, so the terminal sigma is large but not infinite.
 */
export function sigmaNoiseSchedule(config: BetaConfig & { rescale_betas_zero_snr?: boolean }): {
  alphasCumprod: Float32Array;
  trainSigmas: Float32Array;
} {
  let betas = makeBetas(config);
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = alphasCumprodFrom(betas);
  if (config.rescale_betas_zero_snr) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
  return { alphasCumprod, trainSigmas: trainingSigmas(alphasCumprod) };
}

/**
 * Euler's and LMS's schedule before the final sigma: the training sigmas interpolated at the spaced float timesteps,
 * or, with Karras or exponential sigmas, those over the interpolated range (an end the config pins in `range`
 * replaces it), with float32 fractional timesteps from `_sigma_to_t`.
 */
export function spacedSigmaSchedule(
  spacing: TimestepSpacing,
  config: BetaConfig & SigmaScheduleSwitches & { steps_offset: number },
  karras: boolean,
  steps: number,
  trainSigmas: Float32Array,
  range: { sigmaMin: number | null; sigmaMax: number | null } = { sigmaMin: null, sigmaMax: null },
): { sigmas: Float64Array; timesteps: Float64Array } {
  const timesteps = sigmaSchedulerTimesteps(spacing, config.num_train_timesteps, steps, config.steps_offset);
  const sigmas = timesteps.map((t) => interpolateAtIndex(t, trainSigmas));
  if (!karras && !config.use_exponential_sigmas) return { sigmas, timesteps };
  const sigmaMin = range.sigmaMin ?? sigmas[sigmas.length - 1]!;
  const sigmaMax = range.sigmaMax ?? sigmas[0]!;
  const logSigmas = logFloat32(trainSigmas);
  const remapped = karras ? karrasSigmas(sigmaMin, sigmaMax, steps) : exponentialSigmas(sigmaMin, sigmaMax, steps);
  return { sigmas: remapped, timesteps: remapped.map((sigma) => fround(sigmaToTimestep(sigma, logSigmas))) };
}

/** The sigma tensor diffusers builds: every sigma as float32, then the final sigma appended. */
export function withFinalSigma(sigmas: ArrayLike<number>, finalSigma: number): Float64Array {
  const out = new Float64Array(sigmas.length + 1);
  for (let i = 0; i < sigmas.length; i++) out[i] = fround(sigmas[i]!);
  out[sigmas.length] = fround(finalSigma);
  return out;
}

/** init_noise_sigma: the largest sigma, or √(σ_max² + 1) under 'leading' spacing (diffusers' rule). */
export function initNoiseSigmaFor(sigmas: Float64Array, spacing: TimestepSpacing): number {
  let maxSigma = 0;
  for (const sigma of sigmas) maxSigma = Math.max(maxSigma, sigma);
  return spacing === 'leading' ? fround(Math.sqrt(fround(fround(maxSigma * maxSigma) + 1))) : maxSigma;
}

/** x̂₀ = v·outputScale + x·sampleScale for v-prediction at σ: outputScale = −σ/√(σ²+1), sampleScale = 1/(σ²+1). */
export function vPredictionScales(sigma: number): { outputScale: number; sampleScale: number } {
  const sigmaSquared = fround(sigma * sigma);
  return {
    outputScale: fround(-sigma / fround(Math.sqrt(fround(sigmaSquared + 1)))),
    sampleScale: 1 / fround(sigmaSquared + 1),
  };
}

/**
 * The Euler update x + (x − x̂₀)/σ · dt as coefficients on the latents and the model output (LinearStep's
 * `latents` and `prediction`). For ε-prediction (x − x̂₀)/σ is ε itself; for v-prediction
 * x + (x − (v·outputScale + x·sampleScale))·ratio = x·(1 + ratio·(1 − sampleScale)) + v·(−outputScale·ratio).
 */
export function eulerCoefficients(prediction: PredictionType, sigma: number, dt: number): { latents: number; prediction: number } {
  if (prediction === 'v_prediction') {
    const { outputScale, sampleScale } = vPredictionScales(sigma);
    const ratio = dt / sigma;
    return { latents: 1 + ratio * (1 - sampleScale), prediction: -outputScale * ratio };
  }
  if (prediction === 'sample') {
    const ratio = dt / sigma;
    return { latents: 1 + ratio, prediction: -ratio };
  }
  return { latents: 1, prediction: dt };
}

/**
 * The state Euler, Euler a and LMS keep the same way: the schedule, diffusers' lazy step index (set from the first
 * timestep seen, so img2img can start mid-schedule) and `scale_model_input` (x/√(σ²+1) into an owned buffer).
 */
export abstract class SigmaScheduler {
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array = new Float64Array(0);
  initNoiseSigma = 1;

  protected stepIndex: number | null = null;
  private beginIndex: number | null = null;
  protected readonly outputs = new AlternatingBuffers();
  private scaled: Float32Array | null = null;

  protected constructor(timestepSpacing: TimestepSpacing) {
    this.timestepSpacing = timestepSpacing;
  }

  /** The tail of `set_timesteps`: keeps the schedule, derives init_noise_sigma and restarts the step index. */
  protected useSchedule(timesteps: Float64Array, sigmas: Float64Array): void {
    this.sigmas = sigmas;
    this.timesteps = timesteps;
    this.initNoiseSigma = initNoiseSigmaFor(sigmas, this.timestepSpacing);
    this.stepIndex = null;
    this.beginIndex = null;
  }

  /** diffusers' `set_begin_index` (Scheduler.setBeginIndex). */
  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  /** diffusers' `_init_step_index`: the begin index when one is set, else the first timestep's place. */
  protected currentIndex(timestep: number): number {
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? initialStepIndex(this.timesteps, timestep);
    return this.stepIndex;
  }

  /**
   * The σ `add_noise` uses: at the begin index when set (img2img), at the current step once stepping (inpainting),
   * else at the timestep's place in the schedule.
   */
  protected addNoiseSigma(timestep: number): number {
    const index = this.beginIndex === null ? initialStepIndex(this.timesteps, timestep) : (this.stepIndex ?? this.beginIndex);
    return this.sigmas[index]!;
  }

  /** x + ε·σ (add-noise.ts); Euler, Euler a, LMS and Heun all noise this way. */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseOverSigma(this.addNoiseSigma(timestep), original, noise);
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.currentIndex(timestep)]!;
    this.scaled = sized(this.scaled, sample.length);
    return scaleBySigma(sample, sigma, this.scaled);
  }

  /** The factor `scaleModelInput` applies at the step after `index` (LinearStep.nextInputScale). */
  protected nextInputScale(index: number): number {
    return inputScaleFor(this.sigmas[index + 1]!);
  }
}

/**
 * One `randn(sample.shape, generator)` per step, drawn either ahead by `prepare` (while the UNet runs) or on demand
 * by `take`; either way the generator's stream is the same.
 */
export class StepNoise {
  private noise: Float32Array | null = null;
  /** Whether `noise` already holds the next step's draw. */
  private prepared = false;

  constructor(private readonly missingGenerator: string) {}

  prepare(generator: NoiseGenerator, count: number): void {
    if (this.prepared) return;
    generator.randnInto((this.noise = sized(this.noise, count)));
    this.prepared = true;
  }

  /** This step's noise: the prepared draw, or one drawn now. */
  take(generator: NoiseGenerator | undefined, count: number): Float32Array {
    if (!this.prepared) {
      if (!generator) throw new Error(this.missingGenerator);
      this.prepare(generator, count);
    }
    if (this.noise!.length !== count) throw new RangeError(`prepareStep drew ${this.noise!.length} values but the sample has ${count}`);
    this.prepared = false;
    return this.noise!;
  }

  /** A new generation: a draw prepared for the old one is not used. */
  reset(): void {
    this.prepared = false;
  }
}
