/**
 * diffusers' EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2 with s_churn = 0: the plain Euler method on the
 * probability-flow ODE in sigma). The UNet sees x / √(σ² + 1); the step is x + (x − x̂₀)/σ · (σ_next − σ).
 */
import type { NoiseGenerator } from '../rng/types.js';
import {
  AlternatingBuffers,
  BETA_DEFAULTS,
  type BetaConfig,
  alphasCumprodFrom,
  assertSameLength,
  exponentialSigmas,
  initialStepIndex,
  interpolateAtIndex,
  karrasSigmas,
  logFloat32,
  makeBetas,
  rejectUnsupported,
  requireOneSigmaSchedule,
  requireBoolean,
  requireInteger,
  requireOneOf,
  requireSpacing,
  rescaleZeroTerminalSnr,
  resolveConfig,
  samplerDisplayName,
  scaleBySigma,
  sigmaSchedulerTimesteps,
  sigmaToTimestep,
  sized,
  trainingSigmas,
  validateStepCount,
  type PredictionType,
} from './common.js';
import type { LinearStep, Scheduler, SchedulerConfig, SchedulerOptions, TimestepSpacing } from './types.js';

const fround = Math.fround;

export interface EulerConfig extends BetaConfig {
  prediction_type: string;
  interpolation_type: string;
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  use_beta_sigmas: boolean;
  sigma_min: number | null;
  sigma_max: number | null;
  timestep_spacing: string;
  timestep_type: string;
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
  final_sigmas_type: string;
}

/** EulerDiscreteScheduler.__init__'s defaults. */
export const EULER_DEFAULTS: EulerConfig = {
  ...BETA_DEFAULTS,
  prediction_type: 'epsilon',
  interpolation_type: 'linear',
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  sigma_min: null,
  sigma_max: null,
  timestep_spacing: 'linspace',
  timestep_type: 'discrete',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  final_sigmas_type: 'zero',
};

export class EulerScheduler implements Scheduler {
  readonly name = 'euler' as const;
  readonly displayName: string;
  readonly karras: boolean;
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array = new Float64Array(0);
  initNoiseSigma = 1;

  private readonly config: EulerConfig;
  private readonly prediction: PredictionType;
  private readonly alphasCumprod: Float32Array;
  private readonly trainSigmas: Float32Array;
  private stepIndex: number | null = null;
  private readonly outputs = new AlternatingBuffers();
  private scaled: Float32Array | null = null;

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    const config = resolveConfig(EULER_DEFAULTS, modelConfig, {
      use_karras_sigmas: options.karras,
      timestep_spacing: options.timestepSpacing,
    });
    rejectUnsupported(config as unknown as Record<string, unknown>, ['use_beta_sigmas'], 'Euler');
    requireOneOf(config.interpolation_type, 'interpolation_type', ['linear'] as const);
    this.config = config;
    this.prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    this.timestepSpacing = requireSpacing(config.timestep_spacing);
    this.karras = requireBoolean(config.use_karras_sigmas, 'use_karras_sigmas');
    requireBoolean(config.use_exponential_sigmas, 'use_exponential_sigmas');
    requireOneSigmaSchedule({ use_karras_sigmas: this.karras, use_exponential_sigmas: config.use_exponential_sigmas });
    requireOneOf(config.final_sigmas_type, 'final_sigmas_type', ['zero', 'sigma_min'] as const);
    requireOneOf(config.timestep_type, 'timestep_type', ['discrete', 'continuous'] as const);
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.displayName = samplerDisplayName('Euler', this.karras);

    let betas = makeBetas(config);
    if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
    this.alphasCumprod = alphasCumprodFrom(betas);
    if (config.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    this.trainSigmas = trainingSigmas(this.alphasCumprod);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    validateStepCount(numInferenceSteps, config.num_train_timesteps);
    let timesteps = sigmaSchedulerTimesteps(this.timestepSpacing, config.num_train_timesteps, numInferenceSteps, config.steps_offset);
    const logSigmas = logFloat32(trainSigmas);
    let sigmas: Float64Array = timesteps.map((t) => interpolateAtIndex(t, trainSigmas));
    if (this.karras || config.use_exponential_sigmas) {
      // diffusers takes the range from the interpolated schedule unless the config pins sigma_min / sigma_max.
      const sigmaMin = config.sigma_min ?? sigmas[sigmas.length - 1]!;
      const sigmaMax = config.sigma_max ?? sigmas[0]!;
      sigmas = this.karras ? karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps) : exponentialSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      timesteps = sigmas.map((sigma) => fround(sigmaToTimestep(sigma, logSigmas)));
    }
    const last = config.final_sigmas_type === 'sigma_min' ? trainSigmas[0]! : 0;
    const withLast = new Float64Array(sigmas.length + 1);
    for (let i = 0; i < sigmas.length; i++) withLast[i] = fround(sigmas[i]!);
    withLast[sigmas.length] = fround(last);
    this.sigmas = withLast;
    if (config.timestep_type === 'continuous' && this.prediction === 'v_prediction') {
      timesteps = withLast.subarray(0, withLast.length - 1).map((sigma) => fround(0.25 * fround(Math.log(sigma))));
    }
    this.timesteps = timesteps;
    let maxSigma = 0;
    for (const sigma of withLast) maxSigma = Math.max(maxSigma, sigma);
    this.initNoiseSigma =
      this.timestepSpacing === 'leading' ? fround(Math.sqrt(fround(fround(maxSigma * maxSigma) + 1))) : maxSigma;
    this.stepIndex = null;
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

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index]!;
    const dt = fround(this.sigmas[index + 1]! - sigma);
    const out = this.outputs.next(sample.length);
    const count = sample.length;
    // d = (x − x̂₀)/σ, x_next = x + d·dt. For ε-prediction d is ε itself.
    if (this.prediction === 'epsilon') {
      for (let i = 0; i < count; i++) out[i] = sample[i]! + modelOutput[i]! * dt;
    } else if (this.prediction === 'v_prediction') {
      // x̂₀ = v·(−σ/√(σ²+1)) + x/(σ²+1)
      const root = fround(Math.sqrt(fround(fround(sigma * sigma) + 1)));
      const outputScale = fround(-sigma / root);
      const sampleScale = 1 / fround(fround(sigma * sigma) + 1);
      const ratio = dt / sigma;
      for (let i = 0; i < count; i++) {
        const x = sample[i]!;
        out[i] = x + (x - (modelOutput[i]! * outputScale + x * sampleScale)) * ratio;
      }
    } else {
      const ratio = dt / sigma;
      for (let i = 0; i < count; i++) out[i] = sample[i]! + (sample[i]! - modelOutput[i]!) * ratio;
    }
    this.stepIndex = index + 1;
    return out;
  }

  /** Every Euler step (s_churn 0, whatever the prediction type) is linear in the latents and the model output. */
  canStepLinearly(): boolean {
    return true;
  }

  /** `step` as coefficients: the same σ's, the same step index advance (see Scheduler.linearStep). */
  linearStep(timestep: number, _count: number, _generator?: NoiseGenerator): LinearStep {
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index]!;
    const sigmaNext = this.sigmas[index + 1]!;
    const dt = fround(sigmaNext - sigma);
    let latents = 1;
    let prediction = dt;
    if (this.prediction === 'v_prediction') {
      // x + (x − (v·outputScale + x·sampleScale))·ratio = x·(1 + ratio·(1 − sampleScale)) + v·(−outputScale·ratio)
      const root = fround(Math.sqrt(fround(fround(sigma * sigma) + 1)));
      const outputScale = fround(-sigma / root);
      const sampleScale = 1 / fround(fround(sigma * sigma) + 1);
      const ratio = dt / sigma;
      latents = 1 + ratio * (1 - sampleScale);
      prediction = -outputScale * ratio;
    } else if (this.prediction === 'sample') {
      const ratio = dt / sigma;
      latents = 1 + ratio;
      prediction = -ratio;
    }
    this.stepIndex = index + 1;
    return { latents, prediction, noise: 0, noiseValues: null, nextInputScale: inputScaleFor(sigmaNext) };
  }
}

/** The factor `scaleModelInput` applies at σ (scaleBySigma's): 1/√(σ² + 1) in float32 steps. */
function inputScaleFor(sigma: number): number {
  return 1 / fround(Math.sqrt(fround(fround(sigma * sigma) + 1)));
}
