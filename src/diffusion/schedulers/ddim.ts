/**
 * diffusers' DDIMScheduler (Song et al. 2021) with eta = 0, as StableDiffusionPipeline calls it: deterministic,
 * x_prev = √ᾱ_prev · x̂₀ + √(1 − ᾱ_prev) · ε̂, with x̂₀ = (x − √(1 − ᾱ_t) · ε̂)/√ᾱ_t optionally clipped
 * (clip_sample). The step after the last timestep uses `final_alpha_cumprod`: 1 with set_alpha_to_one, else ᾱ_0.
 */
import { addNoiseOverAlphas } from './add-noise.js';
import type { NoiseGenerator } from '../rng/types.js';
import { alphasCumprodFrom, BETA_DEFAULTS, type BetaConfig, makeBetas, rescaleZeroTerminalSnr } from './betas.js';
import { AlternatingBuffers, assertSameLength } from './buffers.js';
import { karrasUnsupported, type PredictionType, rejectUnsupported, requireBoolean, requireInteger, requireNumber, requireOneOf, requireSpacing, resolveConfig } from './config.js';
import { numpyArange, numpyLinspace } from './numpy.js';
import { validateStepCount } from './timesteps.js';
import { roundHalfEven } from '../numeric.js';
import type { LinearStep, Scheduler, SchedulerConfig, SchedulerOptions, TimestepSpacing } from './types.js';

const fround = Math.fround;

export interface DdimConfig extends BetaConfig {
  clip_sample: boolean;
  set_alpha_to_one: boolean;
  steps_offset: number;
  prediction_type: string;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  clip_sample_range: number;
  sample_max_value: number;
  timestep_spacing: string;
  rescale_betas_zero_snr: boolean;
}

/** DDIMScheduler.__init__'s defaults (note clip_sample and set_alpha_to_one default to true here). */
export const DDIM_DEFAULTS: DdimConfig = {
  ...BETA_DEFAULTS,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: 'leading',
  rescale_betas_zero_snr: false,
};

export class DdimScheduler implements Scheduler {
  readonly name = 'ddim' as const;
  readonly displayName = 'DDIM';
  readonly karras = false;
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  readonly sigmas = null;
  readonly initNoiseSigma = 1;

  private readonly config: DdimConfig;
  private readonly prediction: PredictionType;
  private readonly alphasCumprod: Float32Array;
  private readonly finalAlphaCumprod: number;
  private readonly clipRange: number | null;
  private numInferenceSteps = 0;
  private readonly outputs = new AlternatingBuffers();

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    if (options.karras) throw karrasUnsupported('ddim');
    const config = resolveConfig(DDIM_DEFAULTS, modelConfig, { timestep_spacing: options.timestepSpacing });
    rejectUnsupported(config as unknown as Record<string, unknown>, ['thresholding'], 'DDIM');
    this.config = config;
    this.prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    this.timestepSpacing = requireSpacing(config.timestep_spacing);
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.clipRange = requireBoolean(config.clip_sample, 'clip_sample') ? fround(requireNumber(config.clip_sample_range, 'clip_sample_range')) : null;
    let betas = makeBetas(config);
    if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
    this.alphasCumprod = alphasCumprodFrom(betas);
    this.finalAlphaCumprod = requireBoolean(config.set_alpha_to_one, 'set_alpha_to_one') ? 1 : this.alphasCumprod[0]!;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config } = this;
    const trainSteps = config.num_train_timesteps;
    validateStepCount(numInferenceSteps, trainSteps);
    this.numInferenceSteps = numInferenceSteps;
    if (this.timestepSpacing === 'linspace') {
      this.timesteps = numpyLinspace(0, trainSteps - 1, numInferenceSteps).map(roundHalfEven).reverse();
    } else if (this.timestepSpacing === 'leading') {
      const ratio = Math.floor(trainSteps / numInferenceSteps);
      this.timesteps = new Float64Array(numInferenceSteps).map((_, i) => (numInferenceSteps - 1 - i) * ratio + config.steps_offset);
    } else {
      this.timesteps = numpyArange(trainSteps, 0, -trainSteps / numInferenceSteps).map((t) => roundHalfEven(t) - 1);
    }
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  /** √ᾱ_t·x + √(1 − ᾱ_t)·ε at the training timestep itself (add-noise.ts); diffusers has no begin index here. */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseOverAlphas(this.alphasCumprod, timestep, original, noise);
  }

  /** √ᾱ_t, √(1 − ᾱ_t), √ᾱ_prev and the direction scale √(1 − ᾱ_prev) of the step from `timestep`, in float32. */
  private stepScalars(timestep: number): { rootAlpha: number; rootBeta: number; rootAlphaPrev: number; directionScale: number } {
    if (this.numInferenceSteps === 0) throw new Error('call setTimesteps before step');
    const prevTimestep = timestep - Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    const alphaProd = this.alphasCumprod[timestep];
    if (alphaProd === undefined || !Number.isInteger(timestep)) throw new RangeError(`timestep ${timestep} is outside the training schedule`);
    const alphaProdPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep]! : this.finalAlphaCumprod;
    const betaProd = fround(1 - alphaProd);
    return {
      rootAlpha: fround(Math.sqrt(alphaProd)),
      rootBeta: fround(Math.sqrt(betaProd)),
      rootAlphaPrev: fround(Math.sqrt(alphaProdPrev)),
      // eta = 0, so std_dev_t = 0 and the direction coefficient is √(1 − ᾱ_prev).
      directionScale: fround(Math.sqrt(fround(fround(1 - alphaProdPrev) - 0))),
    };
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    const { rootAlpha, rootBeta, rootAlphaPrev, directionScale } = this.stepScalars(timestep);
    const clip = this.clipRange;
    const count = sample.length;
    const out = this.outputs.next(count);
    const inverseRootAlpha = 1 / rootAlpha;
    const inverseRootBeta = 1 / rootBeta;
    if (this.prediction === 'epsilon' && clip === null) {
      for (let i = 0; i < count; i++) {
        const epsilon = modelOutput[i]!;
        out[i] = rootAlphaPrev * ((sample[i]! - rootBeta * epsilon) * inverseRootAlpha) + directionScale * epsilon;
      }
      return out;
    }
    for (let i = 0; i < count; i++) {
      const x = sample[i]!;
      const output = modelOutput[i]!;
      let denoised: number;
      let epsilon: number;
      if (this.prediction === 'epsilon') {
        denoised = (x - rootBeta * output) * inverseRootAlpha;
        epsilon = output;
      } else if (this.prediction === 'v_prediction') {
        denoised = rootAlpha * x - rootBeta * output;
        epsilon = rootAlpha * output + rootBeta * x;
      } else {
        denoised = output;
        epsilon = (x - rootAlpha * denoised) * inverseRootBeta;
      }
      if (clip !== null) denoised = Math.min(Math.max(denoised, -clip), clip);
      out[i] = rootAlphaPrev * denoised + directionScale * epsilon;
    }
    return out;
  }

  /** DDIM with η = 0 is linear unless clip_sample clamps x̂₀. */
  canStepLinearly(): boolean {
    return this.clipRange === null;
  }

  /**
   * `step` as coefficients, expanding x_prev = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev)·ε̂ for each prediction type. DDIM keeps no
   * state between steps and draws no noise, so there is nothing else to advance.
   */
  linearStep(timestep: number, _count: number, _generator?: NoiseGenerator): LinearStep {
    if (!this.canStepLinearly()) throw new Error('DDIM with clip_sample is not linear: use step()');
    const { rootAlpha, rootBeta, rootAlphaPrev, directionScale } = this.stepScalars(timestep);
    let latents: number;
    let prediction: number;
    if (this.prediction === 'epsilon') {
      // x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ
      latents = rootAlphaPrev / rootAlpha;
      prediction = directionScale - (rootAlphaPrev * rootBeta) / rootAlpha;
    } else if (this.prediction === 'v_prediction') {
      // x̂₀ = √ᾱ·x − √(1−ᾱ)·v, ε̂ = √ᾱ·v + √(1−ᾱ)·x
      latents = rootAlphaPrev * rootAlpha + directionScale * rootBeta;
      prediction = directionScale * rootAlpha - rootAlphaPrev * rootBeta;
    } else {
      // x̂₀ = output, ε̂ = (x − √ᾱ·x̂₀)/√(1−ᾱ)
      latents = directionScale / rootBeta;
      prediction = rootAlphaPrev - (directionScale * rootAlpha) / rootBeta;
    }
    return { latents, prediction, noise: 0, noiseValues: null, nextInputScale: 1 };
  }
}
