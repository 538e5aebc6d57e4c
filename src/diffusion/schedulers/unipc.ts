/**
 * diffusers' UniPCMultistepScheduler (Zhao et al. 2023, "UniPC"), A1111's "UniPC": a multistep predictor (UniP)
 * followed, once the UNet has run at the predicted point, by a corrector (UniC) that refines that point with the new
 * model output before the next prediction starts from it. So the corrector costs no extra UNet run: step i first
 * corrects the sample step i − 1 predicted, then predicts step i's result.
 *
 * Both work in λ = log(α/σ) on the data prediction x̂₀ (predict_x0, the default) or on ε, with the B(h) variants bh1
 * (B = h) and bh2 (B = eᴴ − 1, the default). With history m₀ (newest), m₁, … and rₖ = (λ_{s_k} − λ_{s₀})/h,
 * Dₖ = (mₖ − m₀)/rₖ, the update is x_t = (σ_t/σ_s)·x − α_t·(e^{−h} − 1)·m₀ − α_t·B(h)·Σ ρₖ Dₖ, where ρ solves the
 * small system R ρ = b (R_{ik} = rₖ^i, b_i from the φ functions), ρ = ½ for the second-order predictor, and the
 * corrector adds ρ_last·(m_t − m₀) for the new output m_t. Orders warm up from 1 (and fall back to 1 on the last
 * step with lower_order_final). Timesteps and sigmas follow DPM-Solver's rules (linspace/leading/trailing over
 * n + 1 points, Karras or exponential sigmas), sharing its helpers.
 */
import { addNoiseOverAlphaSigma } from './add-noise.js';
import type { NoiseGenerator } from '../rng/types.js';
import { BETA_DEFAULTS, type BetaConfig } from './betas.js';
import { AlternatingBuffers, assertSameLength, sized } from './buffers.js';
import { configError, rejectUnsupported, requireBoolean, requireInteger, requireOneOf, requireSpacing, resolveConfig, type PredictionType } from './config.js';
import { interpolateAtIndex } from './numpy.js';
import { samplerDisplayName } from './sampler-name.js';
import { exponentialSigmas, karrasSigmas, logFloat32, sigmaToTimestep } from './sigmas.js';
import { validateStepCount } from './timesteps.js';
import { roundHalfEven } from '../numeric.js';
import { alphaSigmaLambda, MultistepIndex, multistepTimesteps } from './dpmpp-2m.js';
import { SIGMA_SCHEDULE_DEFAULTS, requireSigmaScheduleSwitches, sigmaNoiseSchedule, withFinalSigma, type SigmaScheduleSwitches } from './sigma-schedule.js';
import type { Scheduler, SchedulerConfig, SchedulerOptions, TimestepSpacing } from './types.js';

const fround = Math.fround;

export interface UniPcConfig extends BetaConfig, SigmaScheduleSwitches {
  solver_order: number;
  prediction_type: string;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  predict_x0: boolean;
  solver_type: string;
  lower_order_final: boolean;
  disable_corrector: number[];
  solver_p: unknown;
  use_flow_sigmas: boolean;
  flow_shift: number;
  timestep_spacing: string;
  steps_offset: number;
  final_sigmas_type: string;
  rescale_betas_zero_snr: boolean;
  use_dynamic_shifting: boolean;
  time_shift_type: string;
  sigma_min: number | null;
  sigma_max: number | null;
  shift_terminal: unknown;
}

/** UniPCMultistepScheduler.__init__'s defaults. */
export const UNIPC_DEFAULTS: UniPcConfig = {
  ...BETA_DEFAULTS,
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  predict_x0: true,
  solver_type: 'bh2',
  lower_order_final: true,
  disable_corrector: [],
  solver_p: null,
  ...SIGMA_SCHEDULE_DEFAULTS,
  use_flow_sigmas: false,
  flow_shift: 1.0,
  timestep_spacing: 'linspace',
  steps_offset: 0,
  final_sigmas_type: 'zero',
  rescale_betas_zero_snr: false,
  use_dynamic_shifting: false,
  time_shift_type: 'exponential',
  sigma_min: null,
  sigma_max: null,
  shift_terminal: null,
};

/** The most history the solver keeps (diffusers allows any order; beyond 3 is not used in practice). */
const MAX_ORDER = 3;

/** Solves the small dense system `matrix · x = rhs` (Gaussian elimination with partial pivoting), in doubles. */
function solveLinear(matrix: number[][], rhs: number[]): number[] {
  const n = rhs.length;
  const a = matrix.map((row, i) => [...row.slice(0, n), rhs[i]!]);
  for (let column = 0; column < n; column++) {
    let pivot = column;
    for (let row = column + 1; row < n; row++) if (Math.abs(a[row]![column]!) > Math.abs(a[pivot]![column]!)) pivot = row;
    [a[column], a[pivot]] = [a[pivot]!, a[column]!];
    for (let row = column + 1; row < n; row++) {
      const factor = a[row]![column]! / a[column]![column]!;
      for (let k = column; k <= n; k++) a[row]![k]! -= factor * a[column]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let row = n - 1; row >= 0; row--) {
    let sum = a[row]![n]!;
    for (let k = row + 1; k < n; k++) sum -= a[row]![k]! * x[k]!;
    x[row] = sum / a[row]![row]!;
  }
  return x;
}

/**
 * The scalars of one UniP or UniC update from noise level `source` (index s₀, history slot 0 = m₀) to `target`, in
 * diffusers' float32 order: the sample and m₀ factors, B(h), and the weights ρ of the differences Dₖ (and, for the
 * corrector, of the new output as the last weight).
 */
interface UpdateScalars {
  sampleScale: number;
  m0Scale: number;
  /** α_t·B(h) (or σ_t·B(h) when predicting ε): what the weighted differences are multiplied by. */
  differenceScale: number;
  /** ρ₁ … ρ_{order−1} on Dₖ = (mₖ − m₀)/rₖ, already divided by rₖ; for the corrector one more, on m_t − m₀. */
  weights: number[];
}

export class UniPcScheduler implements Scheduler {
  readonly name = 'unipc' as const;
  readonly displayName: string;
  readonly karras: boolean;
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  sigmas: Float64Array = new Float64Array(0);
  readonly initNoiseSigma = 1;

  private readonly config: UniPcConfig;
  private readonly prediction: PredictionType;
  private readonly order: number;
  private readonly predictX0: boolean;
  private readonly bh2: boolean;
  private readonly disableCorrector: ReadonlySet<number>;
  private readonly trainSigmas: Float32Array;
  private readonly index = new MultistepIndex(() => this.timesteps);
  private lowerOrderNums = 0;
  /** The order of the last prediction (the corrector of the next step uses it). */
  private lastOrder = 0;
  private readonly outputs = new AlternatingBuffers();
  /** Converted model outputs, oldest first, newest last (owned); `spare` takes the next one. */
  private history: Float32Array[] = [];
  private spare: Float32Array | null = null;
  /** The (corrected) sample the last prediction started from, owned; null before the first step. */
  private lastSample: Float32Array | null = null;
  private lastSampleBuffer: Float32Array | null = null;

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    const config = resolveConfig(UNIPC_DEFAULTS, modelConfig, {
      use_karras_sigmas: options.karras,
      timestep_spacing: options.timestepSpacing,
    });
    rejectUnsupported(
      config as unknown as Record<string, unknown>,
      ['thresholding', 'use_beta_sigmas', 'use_flow_sigmas', 'use_dynamic_shifting', 'solver_p', 'shift_terminal'],
      'UniPC',
    );
    this.config = config;
    this.prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction', 'sample'] as const);
    this.timestepSpacing = requireSpacing(config.timestep_spacing);
    this.karras = requireSigmaScheduleSwitches(config);
    this.order = requireInteger(config.solver_order, 'solver_order', 1);
    if (this.order > MAX_ORDER) throw configError(`solver_order ${this.order} is not supported (1 to ${MAX_ORDER})`);
    this.predictX0 = requireBoolean(config.predict_x0, 'predict_x0');
    // diffusers maps DPM-Solver's solver types to bh2.
    const solverType = ['midpoint', 'heun', 'logrho'].includes(config.solver_type) ? 'bh2' : config.solver_type;
    this.bh2 = requireOneOf(solverType, 'solver_type', ['bh1', 'bh2'] as const) === 'bh2';
    requireBoolean(config.lower_order_final, 'lower_order_final');
    if (!Array.isArray(config.disable_corrector) || !config.disable_corrector.every((step) => Number.isInteger(step))) {
      throw configError('"disable_corrector" must be a list of step indices');
    }
    this.disableCorrector = new Set(config.disable_corrector);
    requireOneOf(config.final_sigmas_type, 'final_sigmas_type', ['zero', 'sigma_min'] as const);
    requireInteger(config.steps_offset, 'steps_offset', 0);
    for (const key of ['sigma_min', 'sigma_max'] as const) {
      const value = config[key];
      if (value !== null && (typeof value !== 'number' || !(value > 0))) throw configError(`"${key}" must be null or a positive number`);
    }
    this.displayName = samplerDisplayName('UniPC', this.karras);
    this.trainSigmas = sigmaNoiseSchedule(config).trainSigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config, trainSigmas } = this;
    const trainSteps = config.num_train_timesteps;
    validateStepCount(numInferenceSteps, trainSteps);
    let timesteps = multistepTimesteps(this.timestepSpacing, trainSteps, trainSteps, numInferenceSteps, config.steps_offset);
    let sigmas: Float64Array;
    let finalSigma: number;
    if (this.karras || config.use_exponential_sigmas) {
      // Over the whole training range (config.sigma_min/sigma_max pin its ends), timesteps from _sigma_to_t:
      // rounded for Karras, truncated (int64) for both.
      const logSigmas = logFloat32(trainSigmas);
      const sigmaMin = config.sigma_min ?? trainSigmas[0]!;
      const sigmaMax = config.sigma_max ?? trainSigmas[trainSigmas.length - 1]!;
      sigmas = this.karras ? karrasSigmas(sigmaMin, sigmaMax, numInferenceSteps) : exponentialSigmas(sigmaMin, sigmaMax, numInferenceSteps);
      timesteps = sigmas.map((sigma) => sigmaToTimestep(sigma, logSigmas));
      if (this.karras) timesteps = timesteps.map(roundHalfEven);
      timesteps = timesteps.map(Math.trunc);
      finalSigma = config.final_sigmas_type === 'sigma_min' ? sigmas[sigmas.length - 1]! : 0;
    } else {
      sigmas = timesteps.map((t) => interpolateAtIndex(t, trainSigmas));
      finalSigma = config.final_sigmas_type === 'sigma_min' ? trainSigmas[0]! : 0;
    }
    this.sigmas = withFinalSigma(sigmas, finalSigma);
    this.timesteps = Float64Array.from(timesteps);
    this.index.reset();
    this.lowerOrderNums = 0;
    this.lastOrder = 0;
    this.history = [];
    this.lastSample = null;
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

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    if (this.sigmas.length === 0) throw new Error('call setTimesteps before step');
    const index = this.index.current(timestep);
    const count = sample.length;

    // The model output as x̂₀ (or ε), at this step's noise level, from the sample before correction.
    const converted = (this.spare = sized(this.spare, count));
    this.convertModelOutput(modelOutput, sample, this.sigmas[index]!, converted);

    // UniC: correct the point the last step predicted, with this step's output; the prediction starts from it.
    const start = (this.lastSampleBuffer = sized(this.lastSampleBuffer, count));
    if (index > 0 && !this.disableCorrector.has(index - 1) && this.lastSample !== null) {
      this.correct(converted, index, start);
    } else {
      start.set(sample);
    }
    this.lastSample = start;

    // Keep the newest `order` outputs: the oldest buffer becomes the next spare.
    this.history.push(converted);
    this.spare = this.history.length > this.order ? this.history.shift()! : null;

    const stepsLeft = this.timesteps.length - index;
    const order = Math.min(this.config.lower_order_final ? Math.min(this.order, stepsLeft) : this.order, this.lowerOrderNums + 1);
    this.lastOrder = order;

    // UniP: predict the next point from the (corrected) sample and the history.
    const out = this.outputs.next(count);
    const { sampleScale, m0Scale, differenceScale, weights } = this.updateScalars(index + 1, index, order, false);
    const m0 = this.history[this.history.length - 1]!;
    for (let i = 0; i < count; i++) {
      const newest = m0[i]!;
      let weighted = 0;
      for (let k = 0; k < weights.length; k++) weighted += weights[k]! * (this.history[this.history.length - 2 - k]![i]! - newest);
      out[i] = sampleScale * start[i]! - m0Scale * newest - differenceScale * weighted;
    }
    if (this.lowerOrderNums < this.order) this.lowerOrderNums++;
    this.index.step = index + 1;
    return out;
  }

  /**
   * UniC into `out` (which holds nothing yet; it is the buffer `lastSample` points to, read element by element
   * before being overwritten): the update from index − 1 to index redone with the new output `current`.
   */
  private correct(current: Float32Array, index: number, out: Float32Array): void {
    const previous = this.lastSample!;
    const { sampleScale, m0Scale, differenceScale, weights } = this.updateScalars(index, index - 1, this.lastOrder, true);
    const history = this.history;
    const m0 = history[history.length - 1]!;
    const historyWeights = weights.slice(0, -1);
    const currentWeight = weights[weights.length - 1]!;
    for (let i = 0; i < out.length; i++) {
      const newest = m0[i]!;
      let weighted = currentWeight * (current[i]! - newest);
      for (let k = 0; k < historyWeights.length; k++) weighted += historyWeights[k]! * (history[history.length - 2 - k]![i]! - newest);
      out[i] = sampleScale * previous[i]! - m0Scale * newest - differenceScale * weighted;
    }
  }

  /** x̂₀ (predict_x0) or ε from the model output at σ, into `out`. */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, sigma: number, out: Float32Array): void {
    const { alpha, sigmaT } = alphaSigmaLambda(sigma);
    const count = sample.length;
    if (this.predictX0) {
      if (this.prediction === 'epsilon') for (let i = 0; i < count; i++) out[i] = (sample[i]! - sigmaT * modelOutput[i]!) / alpha;
      else if (this.prediction === 'v_prediction') for (let i = 0; i < count; i++) out[i] = alpha * sample[i]! - sigmaT * modelOutput[i]!;
      else out.set(modelOutput);
    } else if (this.prediction === 'epsilon') out.set(modelOutput);
    else if (this.prediction === 'v_prediction') for (let i = 0; i < count; i++) out[i] = alpha * modelOutput[i]! + sigmaT * sample[i]!;
    else for (let i = 0; i < count; i++) out[i] = (sample[i]! - alpha * modelOutput[i]!) / sigmaT;
  }

  /**
   * The scalars of the update from sigmas[source] to sigmas[target] of order `order`, with history slots k = 1 …
   * order − 1 at sigmas[source − k]. The predictor's weights are ρ on the history; the corrector's end with the
   * weight of the new output.
   */
  private updateScalars(target: number, source: number, order: number, corrector: boolean): UpdateScalars {
    const t = alphaSigmaLambda(this.sigmas[target]!);
    const s0 = alphaSigmaLambda(this.sigmas[source]!);
    const h = fround(t.lambda - s0.lambda);
    const ratios: number[] = [];
    for (let k = 1; k < order; k++) ratios.push(fround(fround(alphaSigmaLambda(this.sigmas[source - k]!).lambda - s0.lambda) / h));
    ratios.push(1);

    const hh = this.predictX0 ? fround(-h) : h;
    const hPhi1 = fround(Math.expm1(hh));
    const bh = this.bh2 ? hPhi1 : hh;
    // R_{ik} = r_k^i and b_i = i!·φ_{i+1}(hh)·hh / B(h), with φ by the recurrence h_phi_k ← h_phi_k/hh − 1/(k+1)!.
    const matrix: number[][] = [];
    const b: number[] = [];
    let hPhiK = fround(fround(hPhi1 / hh) - 1);
    let factorial = 1;
    for (let i = 1; i <= order; i++) {
      matrix.push(ratios.map((r) => fround(r ** (i - 1))));
      b.push(fround(fround(hPhiK * factorial) / bh));
      factorial *= i + 1;
      hPhiK = fround(fround(hPhiK / hh) - fround(1 / factorial));
    }

    let rhos: number[];
    if (corrector) {
      rhos = order === 1 ? [0.5] : solveLinear(matrix, b);
    } else if (order === 1) {
      rhos = [];
    } else if (order === 2) {
      rhos = [0.5];
    } else {
      rhos = solveLinear(matrix.slice(0, -1), b.slice(0, -1));
    }
    rhos = rhos.map(fround);
    // Dₖ = (mₖ − m₀)/rₖ: fold 1/rₖ into the history weights; the corrector's last weight is on m_t − m₀ as it is.
    const weights = rhos.map((rho, k) => (k < order - 1 ? rho / ratios[k]! : rho));

    if (this.predictX0) {
      return {
        sampleScale: fround(t.sigmaT / s0.sigmaT),
        m0Scale: fround(t.alpha * hPhi1),
        differenceScale: fround(t.alpha * bh),
        weights,
      };
    }
    return {
      sampleScale: fround(t.alpha / s0.alpha),
      m0Scale: fround(t.sigmaT * hPhi1),
      differenceScale: fround(t.sigmaT * bh),
      weights,
    };
  }
}
