/**
 * diffusers' LMSDiscreteScheduler: linear multistep (order 4) in sigma. Each step adds Σ c_k · d_k over the last
 * (up to 4) derivatives d = (x − x̂₀)/σ, where c_k integrates the k-th Lagrange basis polynomial through those steps'
 * sigmas from σ_i to σ_{i+1}. diffusers integrates with scipy's quad; the integrand is a polynomial of degree ≤ 3,
 * so 4-point Gauss–Legendre (exact up to degree 7) gives the same number to rounding.
 */
import type { NoiseGenerator } from '../rng/types.js';
import { BETA_DEFAULTS, type BetaConfig } from './betas.js';
import { assertSameLength, sized } from './buffers.js';
import { type PredictionType, rejectUnsupported, requireInteger, requireOneOf, requireSpacing, resolveConfig } from './config.js';
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

const fround = Math.fround;
const LMS_ORDER = 4;

/** 4-point Gauss–Legendre nodes and weights on [−1, 1]. */
const GAUSS_NODES = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
const GAUSS_WEIGHTS = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];

export interface LmsConfig extends BetaConfig, SigmaScheduleSwitches {
  prediction_type: string;
  timestep_spacing: string;
  steps_offset: number;
}

/** LMSDiscreteScheduler.__init__'s defaults. */
export const LMS_DEFAULTS: LmsConfig = {
  ...BETA_DEFAULTS,
  ...SIGMA_SCHEDULE_DEFAULTS,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
};

export class LmsScheduler extends SigmaScheduler implements Scheduler {
  readonly name = 'lms' as const;
  readonly displayName: string;
  readonly karras: boolean;

  private readonly config: LmsConfig;
  private readonly prediction: PredictionType;
  private readonly trainSigmas: Float32Array;
  /** Ring of the last LMS_ORDER derivatives (owned copies); `derivativeCount` of them are valid. */
  private readonly derivatives: (Float32Array | null)[] = new Array<Float32Array | null>(LMS_ORDER).fill(null);
  private derivativeCount = 0;
  private newestDerivative = -1;
  private readonly coefficients = new Float64Array(LMS_ORDER);

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    const config = resolveConfig(LMS_DEFAULTS, modelConfig, {
      use_karras_sigmas: options.karras,
      timestep_spacing: options.timestepSpacing,
    });
    rejectUnsupported(config as unknown as Record<string, unknown>, ['use_beta_sigmas'], 'LMS');
    const prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    super(requireSpacing(config.timestep_spacing));
    this.config = config;
    this.prediction = prediction;
    this.karras = requireSigmaScheduleSwitches(config);
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.displayName = samplerDisplayName('LMS', this.karras);
    this.trainSigmas = sigmaNoiseSchedule(config).trainSigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    validateStepCount(numInferenceSteps, config.num_train_timesteps);
    const { sigmas, timesteps } = spacedSigmaSchedule(this.timestepSpacing, config, this.karras, numInferenceSteps, trainSigmas);
    this.useSchedule(timesteps, withFinalSigma(sigmas, 0));
    this.derivativeCount = 0;
    this.newestDerivative = -1;
  }

  /**
   * diffusers' get_lms_coefficient: ∫_{σ_t}^{σ_{t+1}} Π_{k≠j} (τ − σ_{t−k}) / (σ_{t−j} − σ_{t−k}) dτ for
   * j = `current`, over the last `order` sigmas.
   */
  private lmsCoefficient(order: number, t: number, current: number): number {
    const sigmas = this.sigmas;
    const from = sigmas[t]!;
    const to = sigmas[t + 1]!;
    const half = (to - from) / 2;
    const middle = (to + from) / 2;
    let integral = 0;
    for (let q = 0; q < GAUSS_NODES.length; q++) {
      const tau = middle + half * GAUSS_NODES[q]!;
      let product = 1;
      for (let k = 0; k < order; k++) {
        if (k === current) continue;
        product *= (tau - sigmas[t - k]!) / (sigmas[t - current]! - sigmas[t - k]!);
      }
      integral += GAUSS_WEIGHTS[q]! * product;
    }
    return integral * half;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const sigma = this.sigmas[index]!;
    const count = sample.length;

    // Store this step's derivative (x − x̂₀)/σ in the ring, overwriting the oldest once LMS_ORDER are kept.
    const slot = (this.newestDerivative + 1) % LMS_ORDER;
    const derivative = (this.derivatives[slot] = sized(this.derivatives[slot] ?? null, count));
    this.newestDerivative = slot;
    this.derivativeCount = Math.min(this.derivativeCount + 1, LMS_ORDER);
    // d = (x − x̂₀)/σ; for ε-prediction that is ε itself.
    if (this.prediction === 'epsilon') {
      derivative.set(modelOutput);
    } else if (this.prediction === 'v_prediction') {
      const { outputScale, sampleScale } = vPredictionScales(sigma);
      const inverseSigma = 1 / sigma;
      for (let i = 0; i < count; i++) {
        const x = sample[i]!;
        derivative[i] = (x - (modelOutput[i]! * outputScale + x * sampleScale)) * inverseSigma;
      }
    } else {
      const inverseSigma = 1 / sigma;
      for (let i = 0; i < count; i++) derivative[i] = (sample[i]! - modelOutput[i]!) * inverseSigma;
    }

    const order = Math.min(index + 1, LMS_ORDER);
    const coefficients = this.coefficients;
    for (let j = 0; j < order; j++) coefficients[j] = fround(this.lmsCoefficient(order, index, j));
    // x + Σ coeff_j · derivative_j, derivative_0 the newest.
    // diffusers zips the coefficients with the derivatives it has: after an img2img start mid-schedule (step index
    // above 0, fewer derivatives than the order) only the first coefficients are used, still of order `order`.
    const terms = Math.min(order, this.derivativeCount);
    const out = this.outputs.next(count);
    const derivativeAt = (age: number): Float32Array => this.derivatives[(this.newestDerivative - age + LMS_ORDER) % LMS_ORDER]!;
    const d0 = derivativeAt(0);
    const c0 = coefficients[0]!;
    if (terms === 1) {
      for (let i = 0; i < count; i++) out[i] = sample[i]! + c0 * d0[i]!;
    } else if (terms === 2) {
      const d1 = derivativeAt(1);
      const c1 = coefficients[1]!;
      for (let i = 0; i < count; i++) out[i] = sample[i]! + (c0 * d0[i]! + c1 * d1[i]!);
    } else if (terms === 3) {
      const [d1, d2] = [derivativeAt(1), derivativeAt(2)];
      const [c1, c2] = [coefficients[1]!, coefficients[2]!];
      for (let i = 0; i < count; i++) out[i] = sample[i]! + (c0 * d0[i]! + c1 * d1[i]! + c2 * d2[i]!);
    } else {
      const [d1, d2, d3] = [derivativeAt(1), derivativeAt(2), derivativeAt(3)];
      const [c1, c2, c3] = [coefficients[1]!, coefficients[2]!, coefficients[3]!];
      for (let i = 0; i < count; i++) out[i] = sample[i]! + (c0 * d0[i]! + c1 * d1[i]! + c2 * d2[i]! + c3 * d3[i]!);
    }
    this.stepIndex = index + 1;
    return out;
  }
}
