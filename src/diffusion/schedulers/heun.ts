/**
 * diffusers' HeunDiscreteScheduler (Karras et al. 2022, Algorithm 1 with s_churn = 0): Heun's second-order method
 * on the probability-flow ODE in sigma. Each noise level but the first is visited twice: an Euler step from σ to
 * σ_next, then, with the UNet run again at σ_next, the correction that averages both slopes:
 *
 *     d₁ = (x − x̂₀(x, σ))/σ,   x' = x + d₁·(σ_next − σ)                  (first visit)
 *     d₂ = (x' − x̂₀(x', σ_next))/σ_next,   x_next = x + (d₁ + d₂)/2 · (σ_next − σ)   (second visit)
 *
 * So `timesteps` has 2n − 1 entries for n steps (t₀, t₁, t₁, …, t_{n−1}, t_{n−1}) and `sigmas` 2n (σ₀, σ₁, σ₁, …,
 * σ_{n−1}, σ_{n−1}, 0); the last step, down to σ = 0, is a plain Euler step. Each entry costs one UNet run.
 */
import type { NoiseGenerator } from '../rng/types.js';
import { BETA_DEFAULTS, type BetaConfig } from './betas.js';
import { assertSameLength, sized } from './buffers.js';
import { rejectUnsupported, requireBoolean, requireInteger, requireNumber, requireOneOf, requireSpacing, resolveConfig, type PredictionType } from './config.js';
import { samplerDisplayName } from './sampler-name.js';
import { validateStepCount } from './timesteps.js';
import {
  SIGMA_SCHEDULE_DEFAULTS,
  SigmaScheduler,
  requireSigmaScheduleSwitches,
  sigmaNoiseSchedule,
  spacedSigmaSchedule,
  vPredictionScales,
  withFinalSigma,
  type SigmaScheduleSwitches,
} from './sigma-schedule.js';
import type { Scheduler, SchedulerConfig, SchedulerOptions } from './types.js';

export interface HeunConfig extends BetaConfig, SigmaScheduleSwitches {
  prediction_type: string;
  clip_sample: boolean;
  clip_sample_range: number;
  timestep_spacing: string;
  steps_offset: number;
}

/** HeunDiscreteScheduler.__init__'s defaults (its beta range defaults to SD's, unlike the other classes). */
export const HEUN_DEFAULTS: HeunConfig = {
  ...BETA_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  prediction_type: 'epsilon',
  ...SIGMA_SCHEDULE_DEFAULTS,
  clip_sample: false,
  clip_sample_range: 1.0,
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

export class HeunScheduler extends SigmaScheduler implements Scheduler {
  readonly name = 'heun' as const;
  readonly displayName: string;
  readonly karras: boolean;
  /** Every noise level but the first is visited twice (diffusers' `order = 2`). */
  readonly timestepsPerStep = 2;

  private readonly config: HeunConfig;
  private readonly prediction: PredictionType;
  /** |x̂₀| is clamped to this when clip_sample is on, else null. */
  private readonly clipRange: number | null;
  private readonly trainSigmas: Float32Array;
  /** Between the two visits of a noise level: d₁, the step size and the sample the Euler step started from. */
  private firstOrder: { derivative: Float32Array; dt: number; sample: Float32Array } | null = null;
  private derivativeBuffer: Float32Array | null = null;
  private sampleBuffer: Float32Array | null = null;

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    const config = resolveConfig(HEUN_DEFAULTS, modelConfig, {
      use_karras_sigmas: options.karras,
      timestep_spacing: options.timestepSpacing,
    });
    rejectUnsupported(config as unknown as Record<string, unknown>, ['use_beta_sigmas'], 'Heun');
    const prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    super(requireSpacing(config.timestep_spacing));
    this.config = config;
    this.prediction = prediction;
    this.karras = requireSigmaScheduleSwitches(config);
    this.clipRange = requireBoolean(config.clip_sample, 'clip_sample') ? Math.fround(requireNumber(config.clip_sample_range, 'clip_sample_range')) : null;
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.displayName = samplerDisplayName('Heun', this.karras);
    this.trainSigmas = sigmaNoiseSchedule(config).trainSigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    validateStepCount(numInferenceSteps, config.num_train_timesteps);
    const { sigmas, timesteps } = spacedSigmaSchedule(this.timestepSpacing, config, this.karras, numInferenceSteps, trainSigmas);
    const finalSigmas = withFinalSigma(sigmas, 0);
    // Every level between the first and the final 0 is visited twice.
    const doubledSigmas = new Float64Array(2 * numInferenceSteps);
    const doubledTimesteps = new Float64Array(2 * numInferenceSteps - 1);
    doubledSigmas[0] = finalSigmas[0]!;
    doubledTimesteps[0] = timesteps[0]!;
    for (let i = 1; i < numInferenceSteps; i++) {
      doubledSigmas[2 * i - 1] = doubledSigmas[2 * i] = finalSigmas[i]!;
      doubledTimesteps[2 * i - 1] = doubledTimesteps[2 * i] = Math.fround(timesteps[i]!);
    }
    doubledSigmas[2 * numInferenceSteps - 1] = finalSigmas[numInferenceSteps]!;
    this.useSchedule(doubledTimesteps, doubledSigmas);
    this.firstOrder = null;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const count = sample.length;
    const out = this.outputs.next(count);
    const pending = this.firstOrder;
    if (pending === null) {
      // Euler step from σ = sigmas[i] to sigmas[i + 1]; keep its slope, size and start for the correction.
      const sigma = this.sigmas[index]!;
      const dt = Math.fround(this.sigmas[index + 1]! - sigma);
      const derivative = (this.derivativeBuffer = sized(this.derivativeBuffer, count));
      this.predictSlope(modelOutput, sample, sigma, derivative);
      for (let i = 0; i < count; i++) out[i] = sample[i]! + derivative[i]! * dt;
      const start = (this.sampleBuffer = sized(this.sampleBuffer, count));
      start.set(sample);
      this.firstOrder = { derivative, dt, sample: start };
    } else {
      // The correction at σ_next = sigmas[i]: average the two slopes and redo the step from the kept start.
      const slope = out;
      this.predictSlope(modelOutput, sample, this.sigmas[index]!, slope);
      const { derivative, dt, sample: start } = pending;
      for (let i = 0; i < count; i++) out[i] = start[i]! + ((derivative[i]! + slope[i]!) / 2) * dt;
      this.firstOrder = null;
    }
    this.stepIndex = index + 1;
    return out;
  }

  /** (x − x̂₀)/σ into `into`, with x̂₀ from the model output at σ (clamped when clip_sample is on). */
  private predictSlope(modelOutput: Float32Array, sample: Float32Array, sigma: number, into: Float32Array): void {
    const clip = this.clipRange;
    const { outputScale, sampleScale } = this.prediction === 'v_prediction' ? vPredictionScales(sigma) : { outputScale: 0, sampleScale: 0 };
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const output = modelOutput[i]!;
      let predicted = this.prediction === 'epsilon' ? x - sigma * output : this.prediction === 'v_prediction' ? output * outputScale + x * sampleScale : output;
      if (clip !== null) predicted = Math.min(Math.max(predicted, -clip), clip);
      into[i] = (x - predicted) / sigma;
    }
  }
}
