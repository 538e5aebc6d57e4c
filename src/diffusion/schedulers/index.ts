import { InvalidRequestError, ModelFileError } from '../errors.js';
import { SCHEDULER_CONFIG_FILE, karrasUnsupported } from './common.js';

export { parseSchedulerConfig } from './common.js';
import { DdimScheduler } from './ddim.js';
import { DpmSolverMultistepScheduler } from './dpmpp-2m.js';
import { EulerAncestralScheduler } from './euler-ancestral.js';
import { EulerScheduler } from './euler.js';
import { LmsScheduler } from './lms.js';
import { PndmScheduler } from './pndm.js';
import {
  KARRAS_SCHEDULERS,
  SAMPLER_NAMES,
  SCHEDULER_NAMES,
  TIMESTEP_SPACINGS,
  type SamplerName,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerName,
  type SchedulerOptions,
  type TimestepSpacing,
} from './types.js';

export { KARRAS_SCHEDULERS, SAMPLER_NAMES, SCHEDULER_NAMES, TIMESTEP_SPACINGS } from './types.js';
export type { SamplerName, Scheduler, SchedulerConfig, SchedulerName, SchedulerOptions, TimestepSpacing } from './types.js';
export { DdimScheduler, DpmSolverMultistepScheduler, EulerAncestralScheduler, EulerScheduler, LmsScheduler, PndmScheduler };

/** diffusers' class name for each of our scheduler names. */
export const SCHEDULER_CLASS_NAMES: Readonly<Record<SchedulerName, string>> = {
  pndm: 'PNDMScheduler',
  euler: 'EulerDiscreteScheduler',
  euler_a: 'EulerAncestralDiscreteScheduler',
  ddim: 'DDIMScheduler',
  dpmpp_2m: 'DPMSolverMultistepScheduler',
  lms: 'LMSDiscreteScheduler',
};

/** Which of our schedulers offer Karras sigmas (diffusers' `use_karras_sigmas`). */
export const KARRAS_CAPABLE: ReadonlySet<SchedulerName> = new Set<SchedulerName>(KARRAS_SCHEDULERS);

/** A sampler name (SAMPLER_NAMES) as the scheduler and Karras choice the engine takes. */
export function samplerSettings(sampler: SamplerName): { scheduler: SchedulerName; karras: boolean } {
  const karras = sampler.endsWith('_karras');
  return { scheduler: (karras ? sampler.slice(0, -'_karras'.length) : sampler) as SchedulerName, karras };
}

/** The sampler name of a scheduler and Karras choice (Karras dropped where the scheduler has no such option). */
export function samplerNameOf(scheduler: SchedulerName, karras = false): SamplerName {
  return karras && KARRAS_CAPABLE.has(scheduler) ? (`${scheduler}_karras` as SamplerName) : scheduler;
}

/** Narrows text to a sampler name, or undefined. */
export function asSamplerName(text: string): SamplerName | undefined {
  return (SAMPLER_NAMES as readonly string[]).includes(text) ? (text as SamplerName) : undefined;
}

/** The scheduler a diffusers class name stands for, or undefined for classes we do not implement. */
export function schedulerNameForClass(className: string): SchedulerName | undefined {
  return SCHEDULER_NAMES.find((name) => SCHEDULER_CLASS_NAMES[name] === className);
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
  if (options.karras && !KARRAS_CAPABLE.has(chosen)) throw karrasUnsupported(chosen);
  switch (chosen) {
    case 'pndm':
      return new PndmScheduler(config, options);
    case 'euler':
      return new EulerScheduler(config, options);
    case 'euler_a':
      return new EulerAncestralScheduler(config, options);
    case 'ddim':
      return new DdimScheduler(config, options);
    case 'dpmpp_2m':
      return new DpmSolverMultistepScheduler(config, options);
    case 'lms':
      return new LmsScheduler(config, options);
    default:
      throw new InvalidRequestError(unknownSchedulerMessage(String(chosen)));
  }
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

const BASE_DISPLAY_NAMES: Readonly<Record<SchedulerName, string>> = {
  pndm: 'PLMS',
  euler: 'Euler',
  euler_a: 'Euler a',
  ddim: 'DDIM',
  dpmpp_2m: 'DPM++ 2M',
  lms: 'LMS',
};

/**
 * A1111-style sampler name for metadata, e.g. "Euler a", "DPM++ 2M Karras". A built scheduler's own `displayName`
 * is more exact (it knows Karras or PLMS-vs-PNDM from the model's config); this is for when none is at hand.
 */
export function schedulerDisplayName(name: SchedulerName, options: { karras?: boolean } = {}): string {
  const base = BASE_DISPLAY_NAMES[name];
  return options.karras && KARRAS_CAPABLE.has(name) ? `${base} Karras` : base;
}
