/**
 * diffusers' DPMSolverMultistepScheduler with its defaults: DPM-Solver++ (Lu et al. 2022), order 2, midpoint,
 * lower_order_final, final sigma 0. Each step turns the model output into a data prediction x̂₀ = (x − σ_t ε̂)/α_t,
 * keeps the last `solver_order` of them, and advances in λ = log(α/σ): first order on the first step (and the last,
 * since the final sigma is 0), second order in between. Karras sigmas pick the noise levels; their timesteps are
 * the rounded `_sigma_to_t`. The SDE variant (algorithm_type "sde-dpmsolver++") draws noise each step from the
 * pipeline's generator.
 */
import { addNoiseOverAlphaSigma } from './add-noise.js';
import type { NoiseGenerator } from '../rng/types.js';
import { BETA_DEFAULTS, type BetaConfig } from './betas.js';
import { AlternatingBuffers, assertSameLength, sized } from './buffers.js';
import { configError, type PredictionType, rejectUnsupported, requireBoolean, requireInteger, requireNumber, requireOneOf, requireSpacing, resolveConfig } from './config.js';
import { interpolateAtIndex, numpyArange, numpyLinspace } from './numpy.js';
import { samplerDisplayName } from './sampler-name.js';
import { exponentialSigmas, karrasSigmas, logFloat32, sigmaToTimestep } from './sigmas.js';
import { validateStepCount } from './timesteps.js';
import { roundHalfEven } from '../numeric.js';
import {
  SIGMA_SCHEDULE_DEFAULTS,
  StepNoise,
  requireSigmaScheduleSwitches,
  sigmaNoiseSchedule,
  withFinalSigma,
  type SigmaScheduleSwitches,
} from './sigma-schedule.js';
import type { Scheduler, SchedulerConfig, SchedulerOptions, TimestepSpacing } from './types.js';

const fround = Math.fround;

export interface DpmSolverConfig extends BetaConfig, SigmaScheduleSwitches {
  solver_order: number;
  prediction_type: string;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  algorithm_type: string;
  solver_type: string;
  lower_order_final: boolean;
  euler_at_final: boolean;
  use_lu_lambdas: boolean;
  use_flow_sigmas: boolean;
  final_sigmas_type: string;
  lambda_min_clipped: number | null;
  variance_type: string | null;
  timestep_spacing: string;
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
}

/** DPMSolverMultistepScheduler.__init__'s defaults. */
export const DPM_SOLVER_DEFAULTS: DpmSolverConfig = {
  ...BETA_DEFAULTS,
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: true,
  euler_at_final: false,
  ...SIGMA_SCHEDULE_DEFAULTS,
  use_lu_lambdas: false,
  use_flow_sigmas: false,
  final_sigmas_type: 'zero',
  lambda_min_clipped: null,
  variance_type: null,
  timestep_spacing: 'linspace',
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

/** α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = log α_t − log σ_t, as float32 tensor math (also UniPC's). */
export function alphaSigmaLambda(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
  const alpha = fround(1 / fround(Math.sqrt(fround(fround(sigma * sigma) + 1))));
  const sigmaT = fround(sigma * alpha);
  const lambda = fround(fround(Math.log(alpha)) - fround(Math.log(sigmaT)));
  return { alpha, sigmaT, lambda };
}

/**
 * The integer timesteps of the multistep solvers (DPM-Solver++, UniPC) before any sigma remapping, highest first:
 * linspace and leading take n of n + 1 evenly spaced points (dropping the last), trailing counts down from
 * `lastTimestep` (below T when DPM's lambda_min_clipped trims the noisiest end) in steps of T/n.
 */
export function multistepTimesteps(spacing: TimestepSpacing, trainSteps: number, lastTimestep: number, steps: number, stepsOffset: number): Float64Array {
  if (spacing === 'linspace') return numpyLinspace(0, lastTimestep - 1, steps + 1).map(roundHalfEven).reverse().subarray(0, steps);
  if (spacing === 'leading') {
    const ratio = Math.floor(lastTimestep / (steps + 1));
    return new Float64Array(steps).map((_, i) => (steps - i) * ratio + stepsOffset);
  }
  return numpyArange(lastTimestep, 0, -trainSteps / steps).map((t) => roundHalfEven(t) - 1);
}

/** diffusers' index_for_timestep of the multistep solvers: the second match if repeated, the last index if absent. */
export function multistepStepIndex(timesteps: Float64Array, timestep: number): number {
  const matches: number[] = [];
  timesteps.forEach((t, i) => {
    if (t === timestep) matches.push(i);
  });
  return matches.length === 0 ? timesteps.length - 1 : matches.length > 1 ? matches[1]! : matches[0]!;
}

/**
 * diffusers' step-index bookkeeping for the multistep solvers (DPM-Solver++, UniPC): `_step_index`, set at the first
 * step from `_begin_index` when img2img set one, else from the timestep's place; and the index `add_noise` uses (the
 * begin index when set — the current step once stepping — else the timestep's place).
 */
export class MultistepIndex {
  /** The step about to run; null until the first step (`_init_step_index`). */
  step: number | null = null;
  private begin: number | null = null;

  constructor(private readonly timesteps: () => Float64Array) {}

  /** `set_timesteps` starts over. */
  reset(): void {
    this.step = null;
    this.begin = null;
  }

  /** diffusers' `set_begin_index`. */
  setBegin(index: number): void {
    this.begin = index;
  }

  current(timestep: number): number {
    if (this.step === null) this.step = this.begin ?? multistepStepIndex(this.timesteps(), timestep);
    return this.step;
  }

  forAddNoise(timestep: number): number {
    return this.begin === null ? multistepStepIndex(this.timesteps(), timestep) : (this.step ?? this.begin);
  }
}

export class DpmSolverMultistepScheduler implements Scheduler {
  /** dpmpp_2m_sde when the config (or DpmSolverSdeScheduler) picks the SDE algorithm. */
  readonly name: 'dpmpp_2m' | 'dpmpp_2m_sde';
  readonly displayName: string;
  readonly karras: boolean;
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array = new Float64Array(0);
  readonly initNoiseSigma = 1;

  private readonly config: DpmSolverConfig;
  private readonly prediction: PredictionType;
  private readonly order: number;
  private readonly sde: boolean;
  private readonly heun: boolean;
  private readonly alphasCumprod: Float32Array;
  private readonly trainSigmas: Float32Array;
  private readonly index = new MultistepIndex(() => this.timesteps);
  private lowerOrderNums = 0;
  private readonly outputs = new AlternatingBuffers();
  /** Ring of the last `order` data predictions (owned); `modelOutputNewest` is the latest slot. */
  private readonly modelOutputs: (Float32Array | null)[];
  private modelOutputNewest = -1;
  private readonly noise = new StepNoise('sde-dpmsolver++ draws noise every step: pass the pipeline generator');

  /** `implied`: from_config overrides a sampler name stands for (DPM++ 2M SDE's algorithm_type). */
  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}, implied: Partial<DpmSolverConfig> = {}) {
    const config = resolveConfig(DPM_SOLVER_DEFAULTS, modelConfig, {
      ...implied,
      use_karras_sigmas: options.karras,
      timestep_spacing: options.timestepSpacing,
    });
    rejectUnsupported(config as unknown as Record<string, unknown>, ['thresholding', 'use_beta_sigmas', 'use_flow_sigmas', 'variance_type'], 'DPM++');
    this.config = config;
    this.prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    this.timestepSpacing = requireSpacing(config.timestep_spacing);
    // As diffusers: Karras and exponential exclude each other; Lu's λ schedule yields to Karras and wins over exponential.
    this.karras = requireSigmaScheduleSwitches(config);
    requireBoolean(config.use_lu_lambdas, 'use_lu_lambdas');
    this.order = requireInteger(config.solver_order, 'solver_order', 1);
    if (this.order > 3) throw configError(`solver_order ${this.order} is not supported (1, 2 or 3)`);
    // diffusers maps the retired "deis" to dpmsolver++ and "logrho"/"bh1"/"bh2" to midpoint.
    const algorithm = config.algorithm_type === 'deis' ? 'dpmsolver++' : config.algorithm_type;
    this.sde = requireOneOf(algorithm, 'algorithm_type', ['dpmsolver++', 'sde-dpmsolver++'] as const) === 'sde-dpmsolver++';
    const solverType = ['logrho', 'bh1', 'bh2'].includes(config.solver_type) ? 'midpoint' : config.solver_type;
    this.heun = requireOneOf(solverType, 'solver_type', ['midpoint', 'heun'] as const) === 'heun';
    requireOneOf(config.final_sigmas_type, 'final_sigmas_type', ['zero', 'sigma_min'] as const);
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.name = this.sde ? 'dpmpp_2m_sde' : 'dpmpp_2m';
    this.displayName = samplerDisplayName(this.sde ? 'DPM++ 2M SDE' : 'DPM++ 2M', this.karras);

    ({ alphasCumprod: this.alphasCumprod, trainSigmas: this.trainSigmas } = sigmaNoiseSchedule(config));
    this.modelOutputs = new Array<Float32Array | null>(this.order).fill(null);
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    const trainSteps = config.num_train_timesteps;
    validateStepCount(numInferenceSteps, trainSteps);
    // lambda_min_clipped trims the noisiest end: count the training steps whose λ is below it.
    let lastTimestep = trainSteps;
    const clip = config.lambda_min_clipped;
    if (clip !== null && clip !== undefined && clip !== Number.NEGATIVE_INFINITY) {
      requireNumber(clip, 'lambda_min_clipped');
      let clipped = 0;
      for (let t = trainSteps - 1; t >= 0; t--) {
        const a = this.alphasCumprod[t]!;
        const lambda = fround(fround(Math.log(fround(Math.sqrt(a)))) - fround(Math.log(fround(Math.sqrt(fround(1 - a))))));
        if (lambda < clip) clipped++;
        else break;
      }
      lastTimestep = trainSteps - clipped;
    }
    let timesteps = multistepTimesteps(this.timestepSpacing, trainSteps, lastTimestep, numInferenceSteps, config.steps_offset);

    let sigmas: Float64Array;
    const schedule = this.karras ? 'karras' : config.use_lu_lambdas ? 'lu' : config.use_exponential_sigmas ? 'exponential' : 'interpolated';
    if (schedule !== 'interpolated') {
      // The range is the whole training schedule (diffusers passes the flipped training sigmas).
      const logSigmas = logFloat32(trainSigmas);
      const sigmaMin = trainSigmas[0]!;
      const sigmaMax = trainSigmas[trainSigmas.length - 1]!;
      if (schedule === 'karras') sigmas = karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      // Lu's schedule: uniform in log σ from the noisiest to the cleanest training step.
      else if (schedule === 'lu') sigmas = numpyLinspace(logSigmas[logSigmas.length - 1]!, logSigmas[0]!, numInferenceSteps).map((v) => Math.exp(v));
      else sigmas = exponentialSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      timesteps = sigmas.map((sigma) => sigmaToTimestep(sigma, logSigmas));
      // Karras and Lu timesteps are rounded (except for the cosine schedule); all become int64, which truncates.
      if (schedule !== 'exponential' && config.beta_schedule !== 'squaredcos_cap_v2') timesteps = timesteps.map(roundHalfEven);
      timesteps = timesteps.map(Math.trunc);
    } else {
      sigmas = timesteps.map((t) => interpolateAtIndex(t, trainSigmas));
    }
    this.sigmas = withFinalSigma(sigmas, config.final_sigmas_type === 'sigma_min' ? trainSigmas[0]! : 0);
    this.timesteps = Float64Array.from(timesteps);
    this.index.reset();
    this.lowerOrderNums = 0;
    this.modelOutputNewest = -1;
    this.noise.reset();
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  /** diffusers' `set_begin_index` (Scheduler.setBeginIndex). */
  setBeginIndex(index: number): void {
    this.index.setBegin(index);
  }

  /** α_t·x + σ_t·ε at the begin index when set (img2img), else at the timestep's place (add-noise.ts). */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseOverAlphaSigma(this.sigmas[this.index.forAddNoise(timestep)]!, original, noise);
  }

  prepareStep(generator: NoiseGenerator, count: number): void {
    if (this.sde) this.noise.prepare(generator, count);
  }

  private modelOutputAt(age: number): Float32Array {
    return this.modelOutputs[(this.modelOutputNewest - age + this.order) % this.order]!;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    if (this.sigmas.length === 0) throw new Error('call setTimesteps before step');
    const index = this.index.current(timestep);
    const stepCount = this.timesteps.length;
    const { config } = this;
    const lowerOrderFinal =
      index === stepCount - 1 && (config.euler_at_final || (config.lower_order_final && stepCount < 15) || config.final_sigmas_type === 'zero');
    const lowerOrderSecond = index === stepCount - 2 && config.lower_order_final && stepCount < 15;
    const count = sample.length;

    // convert_model_output: the data prediction x̂₀, kept in the history ring (an owned copy).
    const slot = (this.modelOutputNewest + 1) % this.order;
    const x0 = (this.modelOutputs[slot] = sized(this.modelOutputs[slot] ?? null, count));
    this.modelOutputNewest = slot;
    const current = alphaSigmaLambda(this.sigmas[index]!);
    if (this.prediction === 'epsilon') {
      const inverseAlpha = 1 / current.alpha;
      for (let i = 0; i < count; i++) x0[i] = (sample[i]! - current.sigmaT * modelOutput[i]!) * inverseAlpha;
    } else if (this.prediction === 'v_prediction') {
      for (let i = 0; i < count; i++) x0[i] = current.alpha * sample[i]! - current.sigmaT * modelOutput[i]!;
    } else {
      x0.set(modelOutput);
    }

    const noise = this.sde ? this.noise.take(generator, count) : null;

    const out = this.outputs.next(count);
    if (this.order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      this.firstOrderUpdate(sample, index, noise, out);
    } else if (this.order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      this.secondOrderUpdate(sample, index, noise, out);
    } else {
      this.thirdOrderUpdate(sample, index, out);
    }
    if (this.lowerOrderNums < this.order) this.lowerOrderNums++;
    this.index.step = index + 1;
    return out;
  }

  private firstOrderUpdate(sample: Float32Array, index: number, noise: Float32Array | null, out: Float32Array): void {
    const target = alphaSigmaLambda(this.sigmas[index + 1]!);
    const source = alphaSigmaLambda(this.sigmas[index]!);
    const h = fround(target.lambda - source.lambda);
    const m0 = this.modelOutputAt(0);
    const count = sample.length;
    if (noise === null) {
      const sampleScale = fround(target.sigmaT / source.sigmaT);
      const outputScale = fround(target.alpha * fround(fround(Math.exp(-h)) - 1));
      for (let i = 0; i < count; i++) out[i] = sampleScale * sample[i]! - outputScale * m0[i]!;
    } else {
      const expMinusH = fround(Math.exp(-h));
      const expMinus2H = fround(Math.exp(fround(-2 * h)));
      const sampleScale = fround(fround(target.sigmaT / source.sigmaT) * expMinusH);
      const outputScale = fround(target.alpha * fround(1 - expMinus2H));
      const noiseScale = fround(target.sigmaT * fround(Math.sqrt(fround(1 - expMinus2H))));
      for (let i = 0; i < count; i++) out[i] = sampleScale * sample[i]! + outputScale * m0[i]! + noiseScale * noise[i]!;
    }
  }

  private secondOrderUpdate(sample: Float32Array, index: number, noise: Float32Array | null, out: Float32Array): void {
    const target = alphaSigmaLambda(this.sigmas[index + 1]!);
    const s0 = alphaSigmaLambda(this.sigmas[index]!);
    const s1 = alphaSigmaLambda(this.sigmas[index - 1]!);
    const m0 = this.modelOutputAt(0);
    const m1 = this.modelOutputAt(1);
    const h = fround(target.lambda - s0.lambda);
    const h0 = fround(s0.lambda - s1.lambda);
    const r0 = fround(h0 / h);
    const inverseR0 = fround(1 / r0);
    const count = sample.length;
    // D0 = m0, D1 = (1/r0)·(m0 − m1).
    if (noise === null) {
      const sampleScale = fround(target.sigmaT / s0.sigmaT);
      const expTerm = fround(fround(Math.exp(-h)) - 1);
      const d0Scale = fround(target.alpha * expTerm);
      const d1Scale = this.heun ? fround(target.alpha * fround(fround(expTerm / h) + 1)) : fround(0.5 * fround(target.alpha * expTerm));
      // midpoint: − ½·α_t(e^{−h} − 1)·D1; heun: + α_t((e^{−h} − 1)/h + 1)·D1.
      const signedD1Scale = (this.heun ? d1Scale : -d1Scale) * inverseR0;
      for (let i = 0; i < count; i++) {
        const a = m0[i]!;
        out[i] = sampleScale * sample[i]! - d0Scale * a + signedD1Scale * (a - m1[i]!);
      }
    } else {
      const expMinusH = fround(Math.exp(-h));
      const expMinus2H = fround(Math.exp(fround(-2 * h)));
      const oneMinus = fround(1 - expMinus2H);
      const sampleScale = fround(fround(target.sigmaT / s0.sigmaT) * expMinusH);
      const d0Scale = fround(target.alpha * oneMinus);
      const d1Scale = this.heun
        ? fround(target.alpha * fround(fround(oneMinus / fround(-2 * h)) + 1))
        : fround(0.5 * fround(target.alpha * oneMinus));
      const noiseScale = fround(target.sigmaT * fround(Math.sqrt(oneMinus)));
      const scaledD1 = d1Scale * inverseR0;
      for (let i = 0; i < count; i++) {
        const a = m0[i]!;
        out[i] = sampleScale * sample[i]! + d0Scale * a + scaledD1 * (a - m1[i]!) + noiseScale * noise[i]!;
      }
    }
  }

  private thirdOrderUpdate(sample: Float32Array, index: number, out: Float32Array): void {
    if (this.sde) throw new Error('third-order SDE DPM++ is not supported');
    const target = alphaSigmaLambda(this.sigmas[index + 1]!);
    const s0 = alphaSigmaLambda(this.sigmas[index]!);
    const s1 = alphaSigmaLambda(this.sigmas[index - 1]!);
    const s2 = alphaSigmaLambda(this.sigmas[index - 2]!);
    const m0 = this.modelOutputAt(0);
    const m1 = this.modelOutputAt(1);
    const m2 = this.modelOutputAt(2);
    const h = fround(target.lambda - s0.lambda);
    const h0 = fround(s0.lambda - s1.lambda);
    const h1 = fround(s1.lambda - s2.lambda);
    const r0 = fround(h0 / h);
    const r1 = fround(h1 / h);
    const inverseR0 = fround(1 / r0);
    const inverseR1 = fround(1 / r1);
    const d1Weight = fround(r0 / fround(r0 + r1));
    const d2Weight = fround(1 / fround(r0 + r1));
    const expTerm = fround(fround(Math.exp(-h)) - 1);
    const sampleScale = fround(target.sigmaT / s0.sigmaT);
    const d0Scale = fround(target.alpha * expTerm);
    const d1Scale = fround(target.alpha * fround(fround(expTerm / h) + 1));
    const d2Scale = fround(target.alpha * fround(fround(fround(expTerm + h) / fround(h * h)) - 0.5));
    const count = sample.length;
    for (let i = 0; i < count; i++) {
      const a = m0[i]!;
      const b = m1[i]!;
      const d10 = inverseR0 * (a - b);
      const d11 = inverseR1 * (b - m2[i]!);
      const difference = d10 - d11;
      const d1 = d10 + d1Weight * difference;
      const d2 = d2Weight * difference;
      out[i] = sampleScale * sample[i]! - d0Scale * a + d1Scale * d1 - d2Scale * d2;
    }
  }
}
