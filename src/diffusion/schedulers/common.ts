/**
 * Math shared by the schedulers, reproducing diffusers' (and through it torch's and numpy's) arithmetic closely
 * enough that timesteps and sigmas match diffusers' tables to float32 precision. The per-element step loops, on the
 * other hand, compute in doubles from float32 scalars and round once on store: torch's per-operation float32
 * rounding is not worth its cost there (the results differ by ~1e-7 relative, far below the UNet's own noise).
 * Schedule tables:
 * - torch float32 tensors (betas, alphas_cumprod, sigmas) are Float32Arrays built with the same operation order,
 *   rounding each float32 operation with Math.fround;
 * - numpy float64 code (np.linspace, np.arange, np.interp, np.round's half-to-even, _sigma_to_t, Karras) is done in
 *   doubles with numpy's own formulas (numpy's arange and linspace fill differently from the obvious formula, and
 *   that changes some timestep lists).
 */
import { InvalidRequestError, ModelFileError } from '../errors.js';
import { roundHalfEven } from '../numeric.js';
import type { SchedulerConfig, TimestepSpacing } from './types.js';
import { TIMESTEP_SPACINGS } from './types.js';

const fround = Math.fround;
export const SCHEDULER_CONFIG_FILE = 'scheduler/scheduler_config.json';

// ───────────────────────────── config resolution (diffusers' from_config) ─────────────────────────────

/**
 * diffusers' `Class.from_config(config, **overrides)`: each key the class takes comes from the overrides, else
 * from the config, else the class's own default. Keys the config lists in `_use_default_values` were defaults
 * of the class that saved it, so they are ignored, as diffusers does. `null` in the config counts as a value
 * (diffusers passes `None` on), `undefined` does not.
 */
export function resolveConfig<T extends object>(defaults: T, config: SchedulerConfig, overrides: Partial<T> = {}): T {
  const usedDefaults = Array.isArray(config._use_default_values) ? new Set(config._use_default_values as unknown[]) : new Set();
  const resolved = { ...defaults } as Record<string, unknown>;
  for (const key of Object.keys(defaults)) {
    if (key in overrides && (overrides as Record<string, unknown>)[key] !== undefined) {
      resolved[key] = (overrides as Record<string, unknown>)[key];
    } else if (Object.prototype.hasOwnProperty.call(config, key) && config[key] !== undefined && !usedDefaults.has(key)) {
      resolved[key] = config[key];
    }
  }
  return resolved as T;
}

/**
 * Parses scheduler_config.json as diffusers writes it. Python's json module writes the non-JSON tokens `-Infinity`,
 * `Infinity` and `NaN` (DPM-Solver configs carry `"lambda_min_clipped": -Infinity`), which JSON.parse rejects; they
 * are read here as the numbers they stand for. Anything else malformed is a ModelFileError naming the file.
 */
export function parseSchedulerConfig(text: string): SchedulerConfig {
  // Each bare token becomes a JSON string starting with an escaped NUL (no real config string starts so), revived below.
  const escaped = text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (token) => (token.startsWith('"') ? token : `"\\u0000${token}"`));
  let parsed: unknown;
  try {
    parsed = JSON.parse(escaped, (_key, value: unknown) => {
      if (typeof value !== 'string' || !value.startsWith('\u0000')) return value;
      const token = value.slice(1);
      return token === 'NaN' ? Number.NaN : token.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
    });
  } catch (error) {
    throw new ModelFileError(SCHEDULER_CONFIG_FILE, `is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw configError('must hold a JSON object');
  return parsed as SchedulerConfig;
}

/** A scheduler_config.json we cannot use: one line naming the file and the problem. */
export function configError(problem: string): ModelFileError {
  return new ModelFileError(SCHEDULER_CONFIG_FILE, problem);
}

/** diffusers allows one alternative sigma schedule at a time (it raises otherwise); so do we. */
export function requireOneSigmaSchedule(switches: Record<string, unknown>): void {
  const on = Object.entries(switches).filter(([, value]) => value === true).map(([key]) => key);
  if (on.length > 1) throw configError(`only one of ${Object.keys(switches).join(', ')} may be on, but ${on.join(' and ')} are`);
}

export function requireNumber(value: unknown, key: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw configError(`"${key}" must be a number, got ${JSON.stringify(value)}`);
  return value;
}

export function requireInteger(value: unknown, key: string, min: number): number {
  const number = requireNumber(value, key);
  if (!Number.isInteger(number) || number < min) throw configError(`"${key}" must be a whole number ≥ ${min}, got ${number}`);
  return number;
}

export function requireBoolean(value: unknown, key: string): boolean {
  if (typeof value !== 'boolean') throw configError(`"${key}" must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

export function requireOneOf<T extends string>(value: unknown, key: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw configError(`"${key}" is ${JSON.stringify(value)}; supported: ${allowed.join(', ')}`);
  }
  return value as T;
}

export function requireSpacing(value: unknown): TimestepSpacing {
  return requireOneOf(value, 'timestep_spacing', TIMESTEP_SPACINGS);
}

/** Rejects config switches we do not implement, rather than silently computing something else. */
export function rejectUnsupported(config: Record<string, unknown>, keys: readonly string[], what: string): void {
  for (const key of keys) {
    if (config[key] !== undefined && config[key] !== null && config[key] !== false) {
      throw configError(`"${key}": ${JSON.stringify(config[key])} is not supported by our ${what} scheduler`);
    }
  }
}

// ───────────────────────────── noise schedule (torch float32) ─────────────────────────────

/** The beta-related keys every scheduler takes, with diffusers' defaults. */
export interface BetaConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: number[] | null;
}

export const BETA_DEFAULTS: BetaConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
};

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` as torch 2.x's CPU kernel computes it: a float32 step,
 * values filled from both ends toward the middle, each `start + step·i` one fused multiply-add (torch's AVX2 build
 * contracts it; with this, diffusers' sigma tables match bit for bit).
 */
export function torchLinspaceFloat32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const first = fround(start);
  const last = fround(end);
  if (steps === 1) {
    out[0] = first;
    return out;
  }
  const step = fround((last - first) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) {
    out[i] = i < halfway ? first + step * i : last - step * (steps - i - 1);
  }
  return out;
}

/** diffusers' betas_for_alpha_bar with the cosine ("squaredcos_cap_v2") transform, computed in doubles. */
function cosineBetas(count: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const betas = new Float32Array(count);
  for (let i = 0; i < count; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / count) / alphaBar(i / count), maxBeta);
  return betas;
}

/** The scheduler's `betas` tensor (float32), from beta_schedule or trained_betas. */
export function makeBetas(config: BetaConfig): Float32Array {
  const count = requireInteger(config.num_train_timesteps, 'num_train_timesteps', 2);
  if (config.trained_betas !== null && config.trained_betas !== undefined) {
    if (!Array.isArray(config.trained_betas) || !config.trained_betas.every((b) => typeof b === 'number')) {
      throw configError('"trained_betas" must be a list of numbers');
    }
    return Float32Array.from(config.trained_betas);
  }
  const start = requireNumber(config.beta_start, 'beta_start');
  const end = requireNumber(config.beta_end, 'beta_end');
  switch (config.beta_schedule) {
    case 'linear':
      return torchLinspaceFloat32(start, end, count);
    case 'scaled_linear': {
      const roots = torchLinspaceFloat32(Math.sqrt(start), Math.sqrt(end), count);
      return roots.map((root) => root * root);
    }
    case 'squaredcos_cap_v2':
      return cosineBetas(count);
    default:
      throw configError(`beta_schedule "${String(config.beta_schedule)}" is not supported (linear, scaled_linear, squaredcos_cap_v2)`);
  }
}

/** `torch.cumprod(1 - betas)`: torch accumulates a float32 cumprod in double and stores each partial as float32. */
export function alphasCumprodFrom(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let product = 1;
  for (let i = 0; i < betas.length; i++) {
    product *= fround(1 - betas[i]!);
    out[i] = product;
  }
  return out;
}

/** diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1), on float32 betas. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const cumprod = alphasCumprodFrom(betas);
  const roots = cumprod.map((a) => Math.sqrt(a));
  const first = roots[0]!;
  const lastRoot = roots[roots.length - 1]!;
  const scale = fround(first / fround(first - lastRoot));
  const bars = roots.map((root) => {
    const shifted = fround(fround(root - lastRoot) * scale);
    return shifted * shifted;
  });
  const out = new Float32Array(betas.length);
  out[0] = fround(1 - bars[0]!);
  for (let i = 1; i < bars.length; i++) out[i] = fround(1 - fround(bars[i]! / bars[i - 1]!));
  return out;
}

/** `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` as float32 tensor ops, in training order (t = 0 … T−1). */
export function trainingSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => Math.sqrt(fround(fround(1 - a) / a)));
}

// ───────────────────────────── numpy helpers (float64) ─────────────────────────────

/** `np.linspace(start, stop, num)` (endpoint included): `i · step + start`, the last value exactly `stop`. */
export function numpyLinspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const step = div > 0 ? (stop - start) / div : NaN;
  for (let i = 0; i < num; i++) out[i] = (div > 0 ? i * step : i * (stop - start)) + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/**
 * `np.arange(start, stop, step)` for floats: length `ceil((stop − start) / step)`, values `start`, `start + step`,
 * then `start + i · delta` with `delta = (start + step) − start` (numpy's fill), which can differ from `i · step`.
 */
export function numpyArange(start: number, stop: number, step: number): Float64Array {
  const length = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(length);
  if (length > 0) out[0] = start;
  if (length > 1) out[1] = start + step;
  const delta = start + step - start;
  for (let i = 2; i < length; i++) out[i] = start + i * delta;
  return out;
}

/** `np.interp(x, np.arange(len(fp)), fp)`: linear interpolation over integer knots, clamped at both ends. */
export function interpolateAtIndex(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (x <= 0) return fp[0]!;
  if (x >= last) return fp[last]!;
  const j = Math.floor(x);
  if (j === x) return fp[j]!;
  return (fp[j + 1]! - fp[j]!) * (x - j) + fp[j]!;
}

/** diffusers' `_sigma_to_t`: the fractional training timestep whose log-sigma a sigma falls on. */
export function sigmaToTimestep(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // Last index whose log-sigma is ≤ logSigma (0 when none is), at most len − 2.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lowLog = logSigmas[low]!;
  const highLog = logSigmas[low + 1]!;
  let w = (lowLog - logSigma) / (lowLog - highLog);
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** `np.log` of a float32 array stays float32. */
export function logFloat32(values: Float32Array): Float32Array {
  return values.map((v) => Math.log(v));
}

/** Karras et al. (2022) noise levels: ρ = 7 interpolation between sigmaMax and sigmaMin, `count` values. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, count: number): Float64Array {
  const rho = 7;
  const ramp = numpyLinspace(0, 1, count);
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  return ramp.map((r) => (maxInvRho + r * (minInvRho - maxInvRho)) ** rho);
}

/** diffusers' exponential sigma schedule: log-linear from sigmaMax to sigmaMin. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, count: number): Float64Array {
  return numpyLinspace(Math.log(sigmaMax), Math.log(sigmaMin), count).map((v) => Math.exp(v));
}

// ───────────────────────────── timestep spacing ─────────────────────────────

/**
 * The float timesteps of the sigma-based schedulers (Euler, Euler a, LMS), as float32 values, highest first:
 * linspace `np.linspace(0, T−1, n, dtype=float32)[::-1]`, leading `arange(n)·(T//n)` reversed + steps_offset,
 * trailing `round(arange(T, 0, −T/n)) − 1`.
 */
export function sigmaSchedulerTimesteps(spacing: TimestepSpacing, trainSteps: number, steps: number, stepsOffset: number): Float64Array {
  switch (spacing) {
    case 'linspace':
      return numpyLinspace(0, trainSteps - 1, steps).map(fround).reverse();
    case 'leading': {
      const ratio = Math.floor(trainSteps / steps);
      const out = new Float64Array(steps);
      for (let i = 0; i < steps; i++) out[i] = fround(fround((steps - 1 - i) * ratio) + stepsOffset);
      return out;
    }
    case 'trailing':
      return numpyArange(trainSteps, 0, -trainSteps / steps).map((t) => fround(fround(roundHalfEven(t)) - 1));
  }
}

/** Integer timesteps of PNDM/DDIM before their own reordering, ascending for PNDM (see each scheduler). */
export function roundTimesteps(values: Float64Array): Float64Array {
  return values.map(roundHalfEven);
}

// ───────────────────────────── step bookkeeping ─────────────────────────────

/**
 * diffusers' `index_for_timestep` on the first call of a generation: the position of `timestep` in the schedule,
 * the second one when it appears twice (so img2img starting mid-schedule does not skip a sigma).
 */
export function initialStepIndex(timesteps: Float64Array, timestep: number): number {
  let first = -1;
  for (let i = 0; i < timesteps.length; i++) {
    if (timesteps[i] === timestep) {
      if (first >= 0) return i;
      first = i;
    }
  }
  if (first < 0) throw new Error(`timestep ${timestep} is not in the scheduler's schedule; call setTimesteps first and pass its timesteps`);
  return first;
}

/** The number of inference steps a request may ask for: 1 … num_train_timesteps (a user-facing error otherwise). */
export function validateStepCount(steps: number, trainSteps: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainSteps) {
    throw new InvalidRequestError(`Steps must be a whole number from 1 to ${trainSteps}, got ${steps}.`);
  }
}

/**
 * Two alternating output buffers: `step` writes into the one it did not return last time, so the caller may pass the
 * previous result back as `sample` (it is only read) without any allocation in steady state.
 */
export class AlternatingBuffers {
  private first: Float32Array | null = null;
  private second: Float32Array | null = null;
  private useSecond = false;

  next(length: number): Float32Array {
    this.useSecond = !this.useSecond;
    if (this.useSecond) {
      if (this.second?.length !== length) this.second = new Float32Array(length);
      return this.second;
    }
    if (this.first?.length !== length) this.first = new Float32Array(length);
    return this.first;
  }
}

/** A Float32Array kept by a scheduler across steps, resized (reallocated) only when the latent size changes. */
export function sized(buffer: Float32Array | null, length: number): Float32Array {
  return buffer !== null && buffer.length === length ? buffer : new Float32Array(length);
}

export function assertSameLength(modelOutput: Float32Array, sample: Float32Array): void {
  if (modelOutput.length !== sample.length) {
    throw new RangeError(`model output has ${modelOutput.length} values but the sample has ${sample.length}`);
  }
}

/** The factor `scale_model_input` applies at σ: 1/√(σ² + 1) in float32 steps. */
export function inputScaleFor(sigma: number): number {
  return 1 / fround(Math.sqrt(fround(fround(sigma * sigma) + 1)));
}

/** `sample / (sigma² + 1) ** 0.5` with diffusers' float32 scalar, into `out`. */
export function scaleBySigma(sample: Float32Array, sigma: number, out: Float32Array): Float32Array {
  const scale = inputScaleFor(sigma);
  for (let i = 0; i < sample.length; i++) out[i] = sample[i]! * scale;
  return out;
}

// ───────────────────────────── names for metadata ─────────────────────────────

/** A1111's sampler names (what its "PNG info" and ComfyUI's readers expect), with " Karras" when in effect. */
export function samplerDisplayName(base: string, karras: boolean): string {
  return karras ? `${base} Karras` : base;
}

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** The user asked for Karras sigmas on a scheduler diffusers has no such option for. */
export function karrasUnsupported(name: string): InvalidRequestError {
  return new InvalidRequestError(`Karras sigmas are not available for ${name}; diffusers offers them for euler, lms, dpmpp_2m, dpmpp_2m_sde, heun and unipc.`);
}
