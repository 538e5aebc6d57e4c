/**
 * diffusers' LCMScheduler: multistep sampling for Latent Consistency Models (Luo et al. 2023). Each step maps the
 * sample straight to a clean estimate with the consistency boundary condition and, except on the last step, noises
 * it again down to the next timestep:
 *
 *     x̂₀ from the model output (ε, v or x₀),   denoised = c_out(t)·x̂₀ + c_skip(t)·x,
 *     x_prev = √ᾱ_prev·denoised + √(1 − ᾱ_prev)·z   (z one `randn(sample.shape, generator)`; none on the last step)
 *
 * with c_skip = σ_d²/((s·t)² + σ_d²), c_out = s·t/√((s·t)² + σ_d²), σ_d = 0.5, s = timestep_scaling. The timesteps
 * are a subset of the distillation schedule k−1, 2k−1, …, T−1 (k = T / original_inference_steps), so a generation
 * takes 1 … original_inference_steps steps. The model is meant to be an LCM-distilled UNet (or one with LCM-LoRA
 * fused in); with an ordinary SD 1.5 UNet the pictures are poor, as in diffusers. `timestep_spacing` is accepted and,
 * as in diffusers, not used.
 */
import type { NoiseGenerator } from '../rng/types.js';
import { BETA_DEFAULTS, type BetaConfig, alphasCumprodFrom, makeBetas, rescaleZeroTerminalSnr } from './betas.js';
import { AlternatingBuffers, assertSameLength } from './buffers.js';
import { configError, karrasUnsupported, rejectUnsupported, requireBoolean, requireInteger, requireNumber, requireOneOf, requireSpacing, resolveConfig, type PredictionType } from './config.js';
import { initialStepIndex, validateStepCount } from './timesteps.js';
import { addNoiseOverAlphas } from './add-noise.js';
import { StepNoise } from './sigma-schedule.js';
import type { LinearStep, Scheduler, SchedulerConfig, SchedulerOptions, TimestepSpacing } from './types.js';

const fround = Math.fround;

export interface LcmConfig extends BetaConfig {
  original_inference_steps: number;
  clip_sample: boolean;
  clip_sample_range: number;
  set_alpha_to_one: boolean;
  steps_offset: number;
  prediction_type: string;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  timestep_spacing: string;
  timestep_scaling: number;
  rescale_betas_zero_snr: boolean;
}

/** LCMScheduler.__init__'s defaults. */
export const LCM_DEFAULTS: LcmConfig = {
  ...BETA_DEFAULTS,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  timestep_spacing: 'leading',
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};

/**
 * What a request with LCM uses when it names no steps or CFG: LCM-distilled models (and LCM-LoRA) are made for 2–8
 * steps with guidance about 1–2, as their authors recommend; SD's usual 30 steps at CFG 7 overshoot. At most
 * LCM_DEFAULTS.original_inference_steps steps (a model's own config may say otherwise; setTimesteps enforces it).
 */
export const LCM_REQUEST_DEFAULTS = { steps: 4, cfg: 1.5, maxSteps: LCM_DEFAULTS.original_inference_steps } as const;

/** The boundary condition's σ_data (diffusers hard-codes 0.5). */
const SIGMA_DATA = 0.5;

/** The float32 scalars of one step. */
interface LcmStepScalars {
  rootAlpha: number;
  rootBeta: number;
  rootAlphaPrev: number;
  rootBetaPrev: number;
  cSkip: number;
  cOut: number;
  /** Whether this step noises the estimate again (every step but the last). */
  addsNoise: boolean;
}

export class LcmScheduler implements Scheduler {
  readonly name = 'lcm' as const;
  readonly displayName = 'LCM';
  readonly karras = false;
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  readonly sigmas = null;
  readonly initNoiseSigma = 1;

  private readonly config: LcmConfig;
  private readonly prediction: PredictionType;
  private readonly alphasCumprod: Float32Array;
  private readonly clipRange: number | null;
  private readonly originalSteps: number;
  private numInferenceSteps = 0;
  private stepIndex: number | null = null;
  private beginIndex: number | null = null;
  private readonly outputs = new AlternatingBuffers();
  private readonly noise = new StepNoise('LCM draws noise on every step but the last: pass the pipeline generator');

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    if (options.karras) throw karrasUnsupported('lcm');
    const config = resolveConfig(LCM_DEFAULTS, modelConfig, { timestep_spacing: options.timestepSpacing });
    rejectUnsupported(config as unknown as Record<string, unknown>, ['thresholding'], 'LCM');
    this.config = config;
    this.prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    this.timestepSpacing = requireSpacing(config.timestep_spacing);
    const trainSteps = requireInteger(config.num_train_timesteps, 'num_train_timesteps', 2);
    this.originalSteps = requireInteger(config.original_inference_steps, 'original_inference_steps', 1);
    if (this.originalSteps > trainSteps) {
      throw configError(`"original_inference_steps" (${this.originalSteps}) cannot exceed "num_train_timesteps" (${trainSteps})`);
    }
    requireNumber(config.timestep_scaling, 'timestep_scaling');
    requireBoolean(config.set_alpha_to_one, 'set_alpha_to_one');
    this.clipRange = requireBoolean(config.clip_sample, 'clip_sample') ? fround(requireNumber(config.clip_sample_range, 'clip_sample_range')) : null;
    let betas = makeBetas(config);
    if (requireBoolean(config.rescale_betas_zero_snr, 'rescale_betas_zero_snr')) betas = rescaleZeroTerminalSnr(betas);
    this.alphasCumprod = alphasCumprodFrom(betas);
  }

  /** Evenly spaced picks from the distillation schedule k−1, 2k−1, …, original_inference_steps·k − 1, highest first. */
  setTimesteps(numInferenceSteps: number): void {
    validateStepCount(numInferenceSteps, this.originalSteps);
    const skip = Math.floor(this.config.num_train_timesteps / this.originalSteps);
    const origin = this.originalSteps;
    // np.floor(np.linspace(0, origin, n, endpoint=False)) indexes the schedule reversed (origin·k − 1 first).
    const spacing = origin / numInferenceSteps;
    this.timesteps = new Float64Array(numInferenceSteps).map((_, i) => (origin - Math.floor(i * spacing)) * skip - 1);
    this.numInferenceSteps = numInferenceSteps;
    this.stepIndex = null;
    this.beginIndex = null;
    this.noise.reset();
  }

  /** diffusers' `set_begin_index` (Scheduler.setBeginIndex). */
  setBeginIndex(index: number): void {
    this.beginIndex = index;
  }

  /** √ᾱ_t·x + √(1 − ᾱ_t)·ε (add-noise.ts); LCM's add_noise reads the timestep itself, not the begin index. */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseOverAlphas(this.alphasCumprod, timestep, original, noise);
  }

  /** LCM feeds the UNet the sample as it is; the step index is fixed here so `prepareStep` knows the step. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    this.currentIndex(timestep);
    return sample;
  }

  private currentIndex(timestep: number): number {
    if (this.numInferenceSteps === 0) throw new Error('call setTimesteps before step');
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? initialStepIndex(this.timesteps, timestep);
    return this.stepIndex;
  }

  /** Draws the next step's noise early, when the step is known (after `scaleModelInput`) and adds noise. */
  prepareStep(generator: NoiseGenerator, count: number): void {
    if (this.stepIndex !== null && this.stepIndex !== this.numInferenceSteps - 1) this.noise.prepare(generator, count);
  }

  /** The scalars of the step at `index` (from `timestep`), in diffusers' float32 order. */
  private stepScalars(index: number, timestep: number): LcmStepScalars {
    const alphaProd = this.alphasCumprod[timestep];
    if (alphaProd === undefined || !Number.isInteger(timestep)) throw new RangeError(`timestep ${timestep} is outside the training schedule`);
    // The last step "goes" to its own timestep; it adds no noise, so only its c_skip/c_out matter.
    const prevTimestep = index + 1 < this.timesteps.length ? this.timesteps[index + 1]! : timestep;
    const alphaProdPrev = this.alphasCumprod[prevTimestep]!;
    const scaled = fround(timestep * fround(this.config.timestep_scaling));
    const scaledSquaredPlus = fround(fround(scaled * scaled) + SIGMA_DATA ** 2);
    return {
      rootAlpha: fround(Math.sqrt(alphaProd)),
      rootBeta: fround(Math.sqrt(fround(1 - alphaProd))),
      rootAlphaPrev: fround(Math.sqrt(alphaProdPrev)),
      rootBetaPrev: fround(Math.sqrt(fround(1 - alphaProdPrev))),
      cSkip: fround(SIGMA_DATA ** 2 / scaledSquaredPlus),
      cOut: fround(scaled / fround(Math.sqrt(scaledSquaredPlus))),
      addsNoise: index !== this.numInferenceSteps - 1,
    };
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    const index = this.currentIndex(timestep);
    const { rootAlpha, rootBeta, rootAlphaPrev, rootBetaPrev, cSkip, cOut, addsNoise } = this.stepScalars(index, timestep);
    const count = sample.length;
    const noise = addsNoise ? this.noise.take(generator, count) : null;
    const clip = this.clipRange;
    const inverseRootAlpha = 1 / rootAlpha;
    const out = this.outputs.next(count);
    for (let i = 0; i < count; i++) {
      const x = sample[i]!;
      const output = modelOutput[i]!;
      let predicted =
        this.prediction === 'epsilon' ? (x - rootBeta * output) * inverseRootAlpha : this.prediction === 'v_prediction' ? rootAlpha * x - rootBeta * output : output;
      if (clip !== null) predicted = Math.min(Math.max(predicted, -clip), clip);
      const denoised = cOut * predicted + cSkip * x;
      out[i] = noise === null ? denoised : rootAlphaPrev * denoised + rootBetaPrev * noise[i]!;
    }
    this.stepIndex = index + 1;
    return out;
  }

  /** Every LCM step is linear in the sample, the model output and its noise, unless clip_sample clamps x̂₀. */
  canStepLinearly(): boolean {
    return this.clipRange === null;
  }

  /** `step` as coefficients: denoised = c_out·x̂₀ + c_skip·x expanded for each prediction type, then re-noised. */
  linearStep(timestep: number, count: number, generator?: NoiseGenerator): LinearStep {
    if (!this.canStepLinearly()) throw new Error('LCM with clip_sample is not linear: use step()');
    const index = this.currentIndex(timestep);
    const { rootAlpha, rootBeta, rootAlphaPrev, rootBetaPrev, cSkip, cOut, addsNoise } = this.stepScalars(index, timestep);
    let latents: number;
    let prediction: number;
    if (this.prediction === 'epsilon') {
      latents = cOut / rootAlpha + cSkip;
      prediction = -(cOut * rootBeta) / rootAlpha;
    } else if (this.prediction === 'v_prediction') {
      latents = cOut * rootAlpha + cSkip;
      prediction = -cOut * rootBeta;
    } else {
      latents = cSkip;
      prediction = cOut;
    }
    const noiseValues = addsNoise ? this.noise.take(generator, count) : null;
    const scale = addsNoise ? rootAlphaPrev : 1;
    this.stepIndex = index + 1;
    return { latents: latents * scale, prediction: prediction * scale, noise: addsNoise ? rootBetaPrev : 0, noiseValues, nextInputScale: 1 };
  }
}
