/**
 * diffusers' EulerAncestralDiscreteScheduler ("Euler a"): an Euler step down to σ_down, then fresh noise of size
 * σ_up, with σ_up² = σ_next²(σ² − σ_next²)/σ² and σ_down² = σ_next² − σ_up². The noise is one
 * `randn(model_output.shape, generator)` per step, drawn from the generator the pipeline seeded, so the whole
 * noise stream (initial latents, then one draw per step, the last step included) matches diffusers'.
 */
import type { NoiseGenerator } from '../rng/types.js';
import {
  AlternatingBuffers,
  BETA_DEFAULTS,
  type BetaConfig,
  alphasCumprodFrom,
  assertSameLength,
  initialStepIndex,
  interpolateAtIndex,
  makeBetas,
  requireInteger,
  requireOneOf,
  requireSpacing,
  rescaleZeroTerminalSnr,
  resolveConfig,
  scaleBySigma,
  sigmaSchedulerTimesteps,
  sized,
  trainingSigmas,
  validateStepCount,
  type PredictionType,
} from './common.js';
import type { LinearStep, Scheduler, SchedulerConfig, SchedulerOptions, TimestepSpacing } from './types.js';

const fround = Math.fround;

export interface EulerAncestralConfig extends BetaConfig {
  prediction_type: string;
  timestep_spacing: string;
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
}

/** EulerAncestralDiscreteScheduler.__init__'s defaults (it has no Karras option). */
export const EULER_ANCESTRAL_DEFAULTS: EulerAncestralConfig = {
  ...BETA_DEFAULTS,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

export class EulerAncestralScheduler implements Scheduler {
  readonly name = 'euler_a' as const;
  readonly displayName = 'Euler a';
  readonly karras = false;
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array = new Float64Array(0);
  initNoiseSigma = 1;

  private readonly config: EulerAncestralConfig;
  private readonly prediction: Exclude<PredictionType, 'sample'>;
  private readonly trainSigmas: Float32Array;
  private stepIndex: number | null = null;
  private readonly outputs = new AlternatingBuffers();
  private scaled: Float32Array | null = null;
  private noise: Float32Array | null = null;
  /** Whether `noise` already holds the next step's draw (see prepareStep). */
  private noisePrepared = false;

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    const config = resolveConfig(EULER_ANCESTRAL_DEFAULTS, modelConfig, { timestep_spacing: options.timestepSpacing });
    this.config = config;
    // diffusers raises NotImplementedError for prediction_type "sample" here.
    this.prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction'] as const);
    this.timestepSpacing = requireSpacing(config.timestep_spacing);
    requireInteger(config.steps_offset, 'steps_offset', 0);
    let betas = makeBetas(config);
    if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
    const alphasCumprod = alphasCumprodFrom(betas);
    if (config.rescale_betas_zero_snr) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
    this.trainSigmas = trainingSigmas(alphasCumprod);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    validateStepCount(numInferenceSteps, config.num_train_timesteps);
    const timesteps = sigmaSchedulerTimesteps(this.timestepSpacing, config.num_train_timesteps, numInferenceSteps, config.steps_offset);
    const sigmas = new Float64Array(timesteps.length + 1);
    for (let i = 0; i < timesteps.length; i++) sigmas[i] = fround(interpolateAtIndex(timesteps[i]!, trainSigmas));
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    let maxSigma = 0;
    for (const sigma of sigmas) maxSigma = Math.max(maxSigma, sigma);
    this.initNoiseSigma =
      this.timestepSpacing === 'leading' ? fround(Math.sqrt(fround(fround(maxSigma * maxSigma) + 1))) : maxSigma;
    this.stepIndex = null;
    this.noisePrepared = false;
  }

  private currentIndex(timestep: number): number {
    if (this.stepIndex === null) this.stepIndex = initialStepIndex(this.timesteps, timestep);
    return this.stepIndex;
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const sigma = this.sigmas[this.currentIndex(timestep)]!;
    this.scaled = sized(this.scaled, sample.length);
    return scaleBySigma(sample, sigma, this.scaled);
  }

  prepareStep(generator: NoiseGenerator, count: number): void {
    if (this.noisePrepared) return;
    generator.randnInto((this.noise = sized(this.noise, count)));
    this.noisePrepared = true;
  }

  /** This step's noise: the prepared draw, or one drawn now. */
  private takeNoise(generator: NoiseGenerator | undefined, count: number): Float32Array {
    if (!this.noisePrepared) {
      if (!generator) throw new Error('euler_a draws noise every step: pass the generator that drew the initial latents');
      this.prepareStep(generator, count);
    }
    if (this.noise!.length !== count) throw new RangeError(`prepareStep drew ${this.noise!.length} values but the sample has ${count}`);
    this.noisePrepared = false;
    return this.noise!;
  }

  /** σ, σ_up and dt = σ_down − σ for step `index`: scalar float32 tensor math in diffusers' order. */
  private stepSigmas(index: number): { sigma: number; sigmaSquared: number; sigmaUp: number; dt: number } {
    const sigma = this.sigmas[index]!;
    const sigmaNext = this.sigmas[index + 1]!;
    const sigmaSquared = fround(sigma * sigma);
    const nextSquared = fround(sigmaNext * sigmaNext);
    const sigmaUp = fround(Math.sqrt(fround(fround(nextSquared * fround(sigmaSquared - nextSquared)) / sigmaSquared)));
    const sigmaDown = fround(Math.sqrt(fround(nextSquared - fround(sigmaUp * sigmaUp))));
    return { sigma, sigmaSquared, sigmaUp, dt: fround(sigmaDown - sigma) };
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const { sigma, sigmaSquared, sigmaUp, dt } = this.stepSigmas(index);
    const count = sample.length;
    // Drawn every step (the last one too, where σ_up = 0), so the stream stays aligned with diffusers'.
    const noise = this.takeNoise(generator, count);
    const out = this.outputs.next(count);
    if (this.prediction === 'epsilon') {
      // d = (x − x̂₀)/σ = ε.
      for (let i = 0; i < count; i++) out[i] = sample[i]! + modelOutput[i]! * dt + noise[i]! * sigmaUp;
    } else {
      const root = fround(Math.sqrt(fround(sigmaSquared + 1)));
      const outputScale = fround(-sigma / root);
      const sampleScale = 1 / fround(sigmaSquared + 1);
      const ratio = dt / sigma;
      for (let i = 0; i < count; i++) {
        const x = sample[i]!;
        out[i] = x + (x - (modelOutput[i]! * outputScale + x * sampleScale)) * ratio + noise[i]! * sigmaUp;
      }
    }
    this.stepIndex = index + 1;
    return out;
  }

  /** Every Euler a step is linear in the latents, the model output and that step's noise. */
  canStepLinearly(): boolean {
    return true;
  }

  /**
   * `step` as coefficients. The noise comes from the same place as in `step` (the draw `prepareStep` made while the
   * UNet ran, or one drawn now), so the generator's stream is the same whichever is used.
   */
  linearStep(timestep: number, count: number, generator?: NoiseGenerator): LinearStep {
    const index = this.currentIndex(timestep);
    const { sigma, sigmaSquared, sigmaUp, dt } = this.stepSigmas(index);
    const noiseValues = this.takeNoise(generator, count);
    let latents = 1;
    let prediction = dt;
    if (this.prediction === 'v_prediction') {
      const root = fround(Math.sqrt(fround(sigmaSquared + 1)));
      const outputScale = fround(-sigma / root);
      const sampleScale = 1 / fround(sigmaSquared + 1);
      const ratio = dt / sigma;
      latents = 1 + ratio * (1 - sampleScale);
      prediction = -outputScale * ratio;
    }
    this.stepIndex = index + 1;
    return { latents, prediction, noise: sigmaUp, noiseValues, nextInputScale: inputScaleFor(this.sigmas[index + 1]!) };
  }
}

/** The factor `scaleModelInput` applies at σ (scaleBySigma's): 1/√(σ² + 1) in float32 steps. */
function inputScaleFor(sigma: number): number {
  return 1 / fround(Math.sqrt(fround(fround(sigma * sigma) + 1)));
}
