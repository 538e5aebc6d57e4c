import { InvalidRequestError, ModelFileError } from '../errors.js';
import { karrasUnsupported, SCHEDULER_CONFIG_FILE } from './config.js';
import { SCHEDULER_REGISTRY, schedulerRegistration } from './registry.js';
import { samplerDisplayName } from './sampler-name.js';
import { LCM_REQUEST_DEFAULTS } from './lcm.js';
import {
  SCHEDULER_NAMES,
  TIMESTEP_SPACINGS,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerName,
  type SchedulerOptions,
  type TimestepSpacing,
} from './types.js';

export { parseSchedulerConfig } from './config.js';
export { SCHEDULER_REGISTRY, schedulerRegistration, type SchedulerRegistration } from './registry.js';
export { SCHEDULER_NAMES, TIMESTEP_SPACINGS } from './types.js';
export type { Scheduler, SchedulerConfig, SchedulerName, SchedulerOptions, TimestepSpacing } from './types.js';
export { DdimScheduler } from './ddim.js';
export { DpmSolverMultistepScheduler } from './dpmpp-2m.js';
export { EulerAncestralScheduler } from './euler-ancestral.js';
export { EulerScheduler } from './euler.js';
export { LmsScheduler } from './lms.js';
export { PndmScheduler } from './pndm.js';
export { HeunScheduler } from './heun.js';
export { DpmSolverSdeScheduler } from './dpmpp-2m-sde.js';
export { UniPcScheduler } from './unipc.js';
export { LcmScheduler } from './lcm.js';

/**
 * Samplers that need other request defaults than the configured ones (steps, CFG) and a lower step ceiling; the
 * bot applies them when a member picks such a sampler without giving steps or CFG.
 */
export const SAMPLER_REQUEST_DEFAULTS: Readonly<Partial<Record<SchedulerName, { steps: number; cfg: number; maxSteps: number }>>> = {
  lcm: LCM_REQUEST_DEFAULTS,
};

/** diffusers' class name for each of our scheduler names (from the registry). */
export const SCHEDULER_CLASS_NAMES: Readonly<Record<SchedulerName, string>> = Object.fromEntries(
  SCHEDULER_REGISTRY.map((row) => [row.name, row.className]),
) as Record<SchedulerName, string>;

/** Which of our schedulers offer Karras sigmas (diffusers' `use_karras_sigmas`; from the registry). */
export const KARRAS_CAPABLE: ReadonlySet<SchedulerName> = new Set(SCHEDULER_REGISTRY.filter((row) => row.karras).map((row) => row.name));

/** The scheduler a diffusers class name stands for, or undefined for classes we do not implement. */
export function schedulerNameForClass(className: string): SchedulerName | undefined {
  return SCHEDULER_REGISTRY.find((row) => row.className === className)?.name;
}

/**
 * diffusers' `SchedulerClass.from_config(model_config, **overrides)`. `name` undefined means the class the model's
 * scheduler_config.json names (`_class_name`). Keys in the config apply to whichever scheduler is chosen; keys it
 * lacks take the chosen class's own defaults; `options` override both.
 * Throws InvalidRequestError for a bad request (e.g. Karras on ddim) and ModelFileError for a config we cannot use.
 */
export function createScheduler(name: SchedulerName | undefined, config: SchedulerConfig, options: SchedulerOptions = {}): Scheduler {
  let chosen = name;
  if (chosen === undefined) {
    const className = config._class_name;
    if (typeof className !== 'string') {
      throw new ModelFileError(SCHEDULER_CONFIG_FILE, 'has no "_class_name"; pass a scheduler explicitly');
    }
    chosen = schedulerNameForClass(className);
    if (chosen === undefined) {
      throw new ModelFileError(
        SCHEDULER_CONFIG_FILE,
        `names scheduler class "${className}", which is not supported; choose one of: ${SCHEDULER_NAMES.join(', ')}`,
      );
    }
  }
  if (options.timestepSpacing !== undefined && !TIMESTEP_SPACINGS.includes(options.timestepSpacing)) {
    throw new InvalidRequestError(`Unknown timestep spacing "${String(options.timestepSpacing)}"; use one of: ${TIMESTEP_SPACINGS.join(', ')}.`);
  }
  // A name from outside the type system (JSON, a cast) that is not ours.
  if (!(SCHEDULER_NAMES as readonly string[]).includes(chosen)) throw new InvalidRequestError(unknownSchedulerMessage(String(chosen)));
  const row = schedulerRegistration(chosen);
  if (options.karras && !row.karras) throw karrasUnsupported(chosen);
  return row.create(config, options);
}

function unknownSchedulerMessage(text: string): string {
  return `Unknown scheduler "${text}"; use one of: ${SCHEDULER_NAMES.join(', ')}.`;
}

/** Parses a scheduler name as users type it (case and `-` vs `_` forgiven); one-line error listing valid names. */
export function parseSchedulerName(text: string): SchedulerName {
  const normalized = text.trim().toLowerCase().replace(/-/g, '_');
  if ((SCHEDULER_NAMES as readonly string[]).includes(normalized)) return normalized as SchedulerName;
  throw new InvalidRequestError(unknownSchedulerMessage(text));
}

/** Parses a timestep spacing name; one-line error listing valid ones. */
export function parseTimestepSpacing(text: string): TimestepSpacing {
  const normalized = text.trim().toLowerCase();
  if ((TIMESTEP_SPACINGS as readonly string[]).includes(normalized)) return normalized as TimestepSpacing;
  throw new InvalidRequestError(`Unknown timestep spacing "${text}"; use one of: ${TIMESTEP_SPACINGS.join(', ')}.`);
}

/**
 * A1111-style sampler name for metadata, e.g. "Euler a", "DPM++ 2M Karras". A built scheduler's own `displayName`
 * is more exact (it knows Karras or PLMS-vs-PNDM from the model's config); this is for when none is at hand.
 */
export function schedulerDisplayName(name: SchedulerName, options: { karras?: boolean } = {}): string {
  const row = schedulerRegistration(name);
  return samplerDisplayName(row.label, (options.karras ?? false) && row.karras);
}
