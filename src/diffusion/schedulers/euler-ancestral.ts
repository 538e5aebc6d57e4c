/**
 * diffusers' EulerAncestralDiscreteScheduler ("Euler a"): an Euler step down to σ_down, then fresh noise of size
 * σ_up, with σ_up² = σ_next²(σ² − σ_next²)/σ² and σ_down² = σ_next² − σ_up². The noise is one
 * `randn(model_output.shape, generator)` per step, drawn from the generator the pipeline seeded, so the whole
 * noise stream (initial latents, then one draw per step, the last step included) matches diffusers'.
 */
import type { NoiseGenerator } from '../rng/types.js';
import { BETA_DEFAULTS, type BetaConfig } from './betas.js';
import { assertSameLength } from './buffers.js';
import { type PredictionType, requireInteger, requireOneOf, requireSpacing, resolveConfig } from './config.js';
import { interpolateAtIndex } from './numpy.js';
import { sigmaSchedulerTimesteps, validateStepCount } from './timesteps.js';
import { SigmaScheduler, StepNoise, eulerCoefficients, sigmaNoiseSchedule, vPredictionScales, withFinalSigma } from './sigma-schedule.js';
import type { LinearStep, Scheduler, SchedulerConfig, SchedulerOptions } from './types.js';

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

export class EulerAncestralScheduler extends SigmaScheduler implements Scheduler {
  readonly name = 'euler_a' as const;
  readonly displayName = 'Euler a';
  readonly karras = false;

  private readonly config: EulerAncestralConfig;
  private readonly prediction: Exclude<PredictionType, 'sample'>;
  private readonly trainSigmas: Float32Array;
  private readonly noise = new StepNoise('euler_a draws noise every step: pass the generator that drew the initial latents');

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    const config = resolveConfig(EULER_ANCESTRAL_DEFAULTS, modelConfig, { timestep_spacing: options.timestepSpacing });
    // diffusers raises NotImplementedError for prediction_type "sample" here.
    const prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction'] as const);
    super(requireSpacing(config.timestep_spacing));
    this.config = config;
    this.prediction = prediction;
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.trainSigmas = sigmaNoiseSchedule(config).trainSigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    validateStepCount(numInferenceSteps, config.num_train_timesteps);
    const timesteps = sigmaSchedulerTimesteps(this.timestepSpacing, config.num_train_timesteps, numInferenceSteps, config.steps_offset);
    this.useSchedule(timesteps, withFinalSigma(timesteps.map((t) => interpolateAtIndex(t, trainSigmas)), 0));
    this.noise.reset();
  }

  prepareStep(generator: NoiseGenerator, count: number): void {
    this.noise.prepare(generator, count);
  }

  /** σ, σ_up and dt = σ_down − σ for step `index`: scalar float32 tensor math in diffusers' order. */
  private stepSigmas(index: number): { sigma: number; sigmaUp: number; dt: number } {
    const sigma = this.sigmas[index]!;
    const sigmaNext = this.sigmas[index + 1]!;
    const sigmaSquared = fround(sigma * sigma);
    const nextSquared = fround(sigmaNext * sigmaNext);
    const sigmaUp = fround(Math.sqrt(fround(fround(nextSquared * fround(sigmaSquared - nextSquared)) / sigmaSquared)));
    const sigmaDown = fround(Math.sqrt(fround(nextSquared - fround(sigmaUp * sigmaUp))));
    return { sigma, sigmaUp, dt: fround(sigmaDown - sigma) };
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const { sigma, sigmaUp, dt } = this.stepSigmas(index);
    const count = sample.length;
    // Drawn every step (the last one too, where σ_up = 0), so the stream stays aligned with diffusers'.
    const noise = this.noise.take(generator, count);
    const out = this.outputs.next(count);
    if (this.prediction === 'epsilon') {
      // d = (x − x̂₀)/σ = ε.
      for (let i = 0; i < count; i++) out[i] = sample[i]! + modelOutput[i]! * dt + noise[i]! * sigmaUp;
    } else {
      const { outputScale, sampleScale } = vPredictionScales(sigma);
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
    const { sigma, sigmaUp, dt } = this.stepSigmas(index);
    const noiseValues = this.noise.take(generator, count);
    const { latents, prediction } = eulerCoefficients(this.prediction, sigma, dt);
    this.stepIndex = index + 1;
    return { latents, prediction, noise: sigmaUp, noiseValues, nextInputScale: this.nextInputScale(index) };
  }
}
