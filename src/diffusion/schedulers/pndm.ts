/**
 * diffusers' PNDMScheduler (Liu et al. 2022, pseudo numerical methods), SD 1.5's default. With skip_prk_steps
 * (SD 1.5's config) it is PLMS only: a linear multistep on the model outputs ("ets"), where the first step is taken
 * twice (the schedule repeats its second timestep) to make a second-order start; without it, three Runge–Kutta
 * (PRK) rounds of 4 evaluations come first. Every update goes through the same transfer formula
 * `_get_prev_sample` between two training timesteps.
 */
import { addNoiseOverAlphas } from './add-noise.js';
import type { NoiseGenerator } from '../rng/types.js';
import { alphasCumprodFrom, BETA_DEFAULTS, type BetaConfig, makeBetas } from './betas.js';
import { AlternatingBuffers, assertSameLength, sized } from './buffers.js';
import { karrasUnsupported, requireBoolean, requireInteger, requireOneOf, requireSpacing, resolveConfig } from './config.js';
import { numpyArange, numpyLinspace } from './numpy.js';
import { validateStepCount } from './timesteps.js';
import { roundHalfEven } from '../numeric.js';
import type { Scheduler, SchedulerConfig, SchedulerOptions, TimestepSpacing } from './types.js';

const fround = Math.fround;
const PNDM_ORDER = 4;

export interface PndmConfig extends BetaConfig {
  skip_prk_steps: boolean;
  set_alpha_to_one: boolean;
  prediction_type: string;
  timestep_spacing: string;
  steps_offset: number;
}

/** PNDMScheduler.__init__'s defaults. */
export const PNDM_DEFAULTS: PndmConfig = {
  ...BETA_DEFAULTS,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
};

export class PndmScheduler implements Scheduler {
  readonly name = 'pndm' as const;
  readonly displayName: string;
  readonly karras = false;
  readonly timestepSpacing: TimestepSpacing;
  timesteps: Float64Array = new Float64Array(0);
  readonly sigmas = null;
  readonly initNoiseSigma = 1;

  private readonly config: PndmConfig;
  private readonly prediction: 'epsilon' | 'v_prediction';
  private readonly alphasCumprod: Float32Array;
  private readonly finalAlphaCumprod: number;
  private numInferenceSteps = 0;
  private prkTimesteps = new Float64Array(0);
  private counter = 0;
  private readonly outputs = new AlternatingBuffers();
  /** Ring of the last 4 model outputs ("ets", owned copies); `etsCount` are valid, `etsNewest` is the latest slot. */
  private readonly ets: (Float32Array | null)[] = new Array<Float32Array | null>(PNDM_ORDER).fill(null);
  private etsCount = 0;
  private etsNewest = -1;
  /** diffusers' `cur_sample` (an owned copy) and whether it is set (not None). */
  private curSample: Float32Array | null = null;
  private hasCurSample = false;
  /** diffusers' `cur_model_output` (PRK accumulation); `hasCurModelOutput` false means the scalar 0. */
  private curModelOutput: Float32Array | null = null;
  private hasCurModelOutput = false;
  private combined: Float32Array | null = null;

  constructor(modelConfig: SchedulerConfig, options: SchedulerOptions = {}) {
    if (options.karras) throw karrasUnsupported('pndm');
    const config = resolveConfig(PNDM_DEFAULTS, modelConfig, { timestep_spacing: options.timestepSpacing });
    this.config = config;
    this.prediction = requireOneOf(config.prediction_type, 'prediction_type', ['epsilon', 'v_prediction'] as const);
    this.timestepSpacing = requireSpacing(config.timestep_spacing);
    requireBoolean(config.skip_prk_steps, 'skip_prk_steps');
    requireBoolean(config.set_alpha_to_one, 'set_alpha_to_one');
    requireInteger(config.steps_offset, 'steps_offset', 0);
    this.displayName = config.skip_prk_steps ? 'PLMS' : 'PNDM';
    this.alphasCumprod = alphasCumprodFrom(makeBetas(config));
    this.finalAlphaCumprod = config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { config } = this;
    const trainSteps = config.num_train_timesteps;
    validateStepCount(numInferenceSteps, trainSteps);
    this.numInferenceSteps = numInferenceSteps;
    // diffusers' `_timesteps`, ascending.
    let base: Float64Array;
    if (this.timestepSpacing === 'linspace') {
      base = numpyLinspace(0, trainSteps - 1, numInferenceSteps).map(roundHalfEven);
    } else if (this.timestepSpacing === 'leading') {
      const ratio = Math.floor(trainSteps / numInferenceSteps);
      base = new Float64Array(numInferenceSteps).map((_, i) => i * ratio + config.steps_offset);
    } else {
      base = numpyArange(trainSteps, 0, -trainSteps / numInferenceSteps).map((t) => roundHalfEven(t) - 1).reverse();
    }
    let prk: number[];
    let plms: number[];
    const values = Array.from(base);
    if (config.skip_prk_steps) {
      // [t_0 … t_{n−2}, t_{n−2}, t_{n−1}] reversed: the first PLMS timestep after the top one repeats.
      prk = [];
      plms = [...values.slice(0, -1), ...values.slice(-2, -1), ...values.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(trainSteps / numInferenceSteps) / 2);
      const lastFour = values.slice(-PNDM_ORDER);
      const repeated = lastFour.flatMap((t) => [t, t + half]);
      prk = repeated
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse();
      plms = values.slice(0, -3).reverse();
    }
    this.prkTimesteps = Float64Array.from(prk);
    this.timesteps = Float64Array.from([...prk, ...plms]);
    this.counter = 0;
    this.etsCount = 0;
    this.etsNewest = -1;
    this.hasCurSample = false;
    this.hasCurModelOutput = false;
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  /** √ᾱ_t·x + √(1 − ᾱ_t)·ε at the training timestep itself (add-noise.ts); diffusers has no begin index here. */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseOverAlphas(this.alphasCumprod, timestep, original, noise);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, _generator?: NoiseGenerator): Float32Array {
    assertSameLength(modelOutput, sample);
    if (this.numInferenceSteps === 0) throw new Error('call setTimesteps before step');
    const result =
      this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps
        ? this.stepPrk(modelOutput, timestep, sample)
        : this.stepPlms(modelOutput, timestep, sample);
    this.counter++;
    return result;
  }

  private pushEts(modelOutput: Float32Array): void {
    const slot = (this.etsNewest + 1) % PNDM_ORDER;
    const copy = (this.ets[slot] = sized(this.ets[slot] ?? null, modelOutput.length));
    copy.set(modelOutput);
    this.etsNewest = slot;
    this.etsCount = Math.min(this.etsCount + 1, PNDM_ORDER);
  }

  /** ets[-1 − age]. */
  private etsAt(age: number): Float32Array {
    return this.ets[(this.etsNewest - age + PNDM_ORDER) % PNDM_ORDER]!;
  }

  private rememberSample(sample: Float32Array): void {
    this.curSample = sized(this.curSample, sample.length);
    this.curSample.set(sample);
    this.hasCurSample = true;
  }

  private stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const count = sample.length;
    const stride = Math.floor(this.config.num_train_timesteps / this.numInferenceSteps);
    let prevTimestep = timestep - stride;
    if (this.counter !== 1) {
      // diffusers keeps the last 3 and appends: with the ring holding 4, pushing drops the oldest the same way.
      this.pushEts(modelOutput);
    } else {
      // The repeated timestep: this evaluation was at t_prev, the update goes from the previous t again.
      prevTimestep = timestep;
      timestep = timestep + stride;
    }

    let effective: Float32Array;
    let from = sample;
    const combined = (this.combined = sized(this.combined, count));
    if (this.etsCount === 1 && this.counter === 0) {
      effective = modelOutput;
      this.rememberSample(sample);
    } else if (this.etsCount === 1 && this.counter === 1) {
      const e1 = this.etsAt(0);
      for (let i = 0; i < count; i++) combined[i] = (modelOutput[i]! + e1[i]!) * 0.5;
      effective = combined;
      from = this.curSample!;
      this.hasCurSample = false;
    } else if (this.etsCount === 2) {
      const e1 = this.etsAt(0);
      const e2 = this.etsAt(1);
      for (let i = 0; i < count; i++) combined[i] = (3 * e1[i]! - e2[i]!) * 0.5;
      effective = combined;
    } else if (this.etsCount === 3) {
      const e1 = this.etsAt(0);
      const e2 = this.etsAt(1);
      const e3 = this.etsAt(2);
      const scale = 1 / 12;
      for (let i = 0; i < count; i++) combined[i] = (23 * e1[i]! - 16 * e2[i]! + 5 * e3[i]!) * scale;
      effective = combined;
    } else {
      const e1 = this.etsAt(0);
      const e2 = this.etsAt(1);
      const e3 = this.etsAt(2);
      const e4 = this.etsAt(3);
      const scale = 1 / 24;
      if (this.prediction === 'epsilon') {
        // The steady state of every generation: combine and update in one pass. fround() rounds the combination to
        // float32 exactly where storing it in `combined` would, so the result is bit-identical to two passes.
        const { sampleCoeff, outputScale } = this.updateCoefficients(timestep, prevTimestep);
        const out = this.outputs.next(count);
        for (let i = 0; i < count; i++) {
          const eps = fround((55 * e1[i]! - 59 * e2[i]! + 37 * e3[i]! - 9 * e4[i]!) * scale);
          out[i] = sampleCoeff * from[i]! - outputScale * eps;
        }
        return out;
      }
      for (let i = 0; i < count; i++) combined[i] = (55 * e1[i]! - 59 * e2[i]! + 37 * e3[i]! - 9 * e4[i]!) * scale;
      effective = combined;
    }
    return this.previousSample(from, timestep, prevTimestep, effective);
  }

  private stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const count = sample.length;
    const half = Math.floor(Math.floor(this.config.num_train_timesteps / this.numInferenceSteps) / 2);
    const diffToPrev = this.counter % 2 ? 0 : half;
    const prevTimestep = timestep - diffToPrev;
    const rkTimestep = this.prkTimesteps[Math.floor(this.counter / 4) * 4]!;
    const accumulated = (this.curModelOutput = sized(this.curModelOutput, count));
    let effective = modelOutput;
    const phase = this.counter % 4;
    if (phase === 0 || phase === 1 || phase === 2) {
      const weight = fround(phase === 0 ? 1 / 6 : 1 / 3);
      if (this.hasCurModelOutput) for (let i = 0; i < count; i++) accumulated[i] = accumulated[i]! + weight * modelOutput[i]!;
      else for (let i = 0; i < count; i++) accumulated[i] = weight * modelOutput[i]!;
      this.hasCurModelOutput = true;
      if (phase === 0) {
        this.pushEts(modelOutput);
        this.rememberSample(sample);
      }
    } else {
      const combined = (this.combined = sized(this.combined, count));
      const weight = fround(1 / 6);
      if (this.hasCurModelOutput) for (let i = 0; i < count; i++) combined[i] = accumulated[i]! + weight * modelOutput[i]!;
      else for (let i = 0; i < count; i++) combined[i] = weight * modelOutput[i]!;
      effective = combined;
      this.hasCurModelOutput = false;
    }
    const from = this.hasCurSample ? this.curSample! : sample;
    return this.previousSample(from, rkTimestep, prevTimestep, effective);
  }

  /** The scalars of diffusers' `_get_prev_sample` (formula (9) of the PNDM paper): x' = c_x·x − c_ε·ε. */
  private updateCoefficients(timestep: number, prevTimestep: number): { sampleCoeff: number; outputScale: number; alphaProd: number; betaProd: number } {
    const alphaProd = this.alphaAt(timestep);
    const alphaProdPrev = prevTimestep >= 0 ? this.alphaAt(prevTimestep) : this.finalAlphaCumprod;
    const betaProd = fround(1 - alphaProd);
    const betaProdPrev = fround(1 - alphaProdPrev);
    const sampleCoeff = fround(Math.sqrt(fround(alphaProdPrev / alphaProd)));
    const denominator = fround(
      fround(alphaProd * fround(Math.sqrt(betaProdPrev))) + fround(Math.sqrt(fround(fround(alphaProd * betaProd) * alphaProdPrev))),
    );
    const difference = fround(alphaProdPrev - alphaProd);
    return { sampleCoeff, outputScale: difference / denominator, alphaProd, betaProd };
  }

  /** diffusers' `_get_prev_sample` (formula (9) of the PNDM paper), float32 tensor math. */
  private previousSample(sample: Float32Array, timestep: number, prevTimestep: number, modelOutput: Float32Array): Float32Array {
    const { sampleCoeff, outputScale, alphaProd, betaProd } = this.updateCoefficients(timestep, prevTimestep);
    const count = sample.length;
    const out = this.outputs.next(count);
    if (this.prediction === 'epsilon') {
      for (let i = 0; i < count; i++) out[i] = sampleCoeff * sample[i]! - outputScale * modelOutput[i]!;
    } else {
      // v-prediction: ε = √ᾱ·v + √(1−ᾱ)·x first.
      const rootAlpha = fround(Math.sqrt(alphaProd));
      const rootBeta = fround(Math.sqrt(betaProd));
      for (let i = 0; i < count; i++) {
        const x = sample[i]!;
        out[i] = sampleCoeff * x - outputScale * (rootAlpha * modelOutput[i]! + rootBeta * x);
      }
    }
    return out;
  }

  private alphaAt(timestep: number): number {
    const value = this.alphasCumprod[timestep];
    if (value === undefined || !Number.isInteger(timestep)) throw new RangeError(`timestep ${timestep} is outside the training schedule`);
    return value;
  }
}
