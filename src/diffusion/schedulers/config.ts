/** scheduler_config.json: parsing as diffusers writes it, diffusers' `from_config` resolution, and one-line checks. */
import { InvalidRequestError, ModelFileError } from '../errors.js';
import type { SchedulerConfig, TimestepSpacing } from './types.js';
import { TIMESTEP_SPACINGS } from './types.js';

export const SCHEDULER_CONFIG_FILE = 'scheduler/scheduler_config.json';

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

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** The user asked for Karras sigmas on a scheduler diffusers has no such option for. */
export function karrasUnsupported(name: string): InvalidRequestError {
  return new InvalidRequestError(`Karras sigmas are not available for ${name}; diffusers offers them for euler, lms, dpmpp_2m, dpmpp_2m_sde, heun and unipc.`);
}
