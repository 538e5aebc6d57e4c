/**
 * diffusers' EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2 with s_churn = 0: the plain Euler method on the
 * probability-flow ODE in sigma). The UNet sees x / √(σ² + 1); the step is x + (x − x̂₀)/σ · (σ_next − σ).
 */
import type { NoiseGenerator } from '../rng/types.js';
import { BETA_DEFAULTS, type BetaConfig } from './betas.js';
import { assertSameLength } from './buffers.js';
import { type PredictionType, rejectUnsupported, requireInteger, requireOneOf, requireSpacing, resolveConfig } from './config.js';
import { samplerDisplayName } from './sampler-name.js';
import { validateStepCount } from './timesteps.js';
import {
  SIGMA_SCHEDULE_DEFAULTS,
  SigmaScheduler,
  eulerCoefficients,
  requireSigmaScheduleSwitches,
  sigmaNoiseSchedule,
  spacedSigmaSchedule,
  vPredictionScales,
  withFinalSigma,
  type SigmaScheduleSwitches,
} from './sigma-schedule.js';
import type { LinearStep, Scheduler, SchedulerConfig, SchedulerOptions } from './types.js';

const fround = Math.fround;

export interface EulerConfig extends BetaConfig, SigmaScheduleSwitches {
  prediction_type: string;
  interpolation_type: string;
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
  ...SIGMA_SCHEDULE_DEFAULTS,
  sigma_min: null,
  sigma_max: null,
  timestep_spacing: 'linspace',
  timestep_type: 'discrete',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  final_sigmas_type: 'zero',
};

export class EulerScheduler extends SigmaScheduler implements Scheduler {
  readonly name = 'euler' as const;
  readonly displayName: string;
  readonly karras: boolean;

  private readonly config: EulerConfig;
  private readonly prediction: PredictionType;
  private readonly trainSigmas: Float32Array;

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    const config = resolveConfig(EULER_DEFAULTS, modelConfig, {
      use_karras_sigmas: options.karras,
      timestep_spacing: options.timestepSpacing,
    });
    rejectUnsupported(config as unknown as Record<string, unknown>, ['use_beta_sigmas'], 'Euler');
    requireOneOf(config.interpolation_type, 'interpolation_type', ['linear'] as const);
    const prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    super(requireSpacing(config.timestep_spacing));
    this.config = config;
    this.prediction = prediction;
    this.karras = requireSigmaScheduleSwitches(config);
    requireOneOf(config.final_sigmas_type, 'final_sigmas_type', ['zero', 'sigma_min'] as const);
    requireOneOf(config.timestep_type, 'timestep_type', ['discrete', 'continuous'] as const);
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.displayName = samplerDisplayName('Euler', this.karras);
    this.trainSigmas = sigmaNoiseSchedule(config).trainSigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    validateStepCount(numInferenceSteps, config.num_train_timesteps);
    // diffusers takes the Karras / exponential range from the interpolated schedule unless the config pins
    // sigma_min / sigma_max.
    const range = { sigmaMin: config.sigma_min, sigmaMax: config.sigma_max };
    const spaced = spacedSigmaSchedule(this.timestepSpacing, config, this.karras, numInferenceSteps, trainSigmas, range);
    let timesteps = spaced.timesteps;
    const withLast = withFinalSigma(spaced.sigmas, config.final_sigmas_type === 'sigma_min' ? trainSigmas[0]! : 0);
    if (config.timestep_type === 'continuous' && this.prediction === 'v_prediction') {
      timesteps = withLast.subarray(0, withLast.length - 1).map((sigma) => fround(0.25 * fround(Math.log(sigma))));
    }
    this.useSchedule(timesteps, withLast);
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
      const { outputScale, sampleScale } = vPredictionScales(sigma);
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
    const { latents, prediction } = eulerCoefficients(this.prediction, sigma, fround(sigmaNext - sigma));
    this.stepIndex = index + 1;
    return { latents, prediction, noise: 0, noiseValues: null, nextInputScale: this.nextInputScale(index) };
  }
}
