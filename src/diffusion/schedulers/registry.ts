/**
 * Every sampler we offer, one row each: our name, the label A1111 users know, diffusers' class name, whether it takes
 * Karras sigmas, and how to build it. Everything else (SCHEDULER_CLASS_NAMES, KARRAS_CAPABLE, display names,
 * `createScheduler`'s choice) is derived from these rows in index.ts.
 *
 * Adding a scheduler: write its file (implementing `Scheduler` from types.ts, importing only the helpers it uses:
 * config.ts, betas.ts, sigmas.ts, timesteps.ts, numpy.ts, buffers.ts, sigma-schedule.ts), add its name to
 * SCHEDULER_NAMES in types.ts (the CLI, the config schema and the bot's choices read that list), and add its row
 * here. The registry is typed by SCHEDULER_NAMES, so TypeScript refuses a name without a row.
 */
import { DdimScheduler } from './ddim.js';
import { DpmSolverMultistepScheduler } from './dpmpp-2m.js';
import { DpmSolverSdeScheduler } from './dpmpp-2m-sde.js';
import { EulerAncestralScheduler } from './euler-ancestral.js';
import { EulerScheduler } from './euler.js';
import { HeunScheduler } from './heun.js';
import { LcmScheduler } from './lcm.js';
import { LmsScheduler } from './lms.js';
import { PndmScheduler } from './pndm.js';
import { UniPcScheduler } from './unipc.js';
import { SCHEDULER_NAMES, type Scheduler, type SchedulerConfig, type SchedulerName, type SchedulerOptions } from './types.js';

export interface SchedulerRegistration {
  name: SchedulerName;
  /** A1111's sampler name, without " Karras" (what its "PNG info" and users call it). */
  label: string;
  /** diffusers' class name, as scheduler_config.json's `_class_name` names it. */
  className: string;
  /** Whether diffusers offers `use_karras_sigmas` for it. */
  karras: boolean;
  /** diffusers' `Class.from_config(config, **options)`. */
  create(config: SchedulerConfig, options: SchedulerOptions): Scheduler;
}

const REGISTRY: { readonly [Name in SchedulerName]: SchedulerRegistration & { name: Name } } = {
  pndm: { name: 'pndm', label: 'PLMS', className: 'PNDMScheduler', karras: false, create: (config, options) => new PndmScheduler(config, options) },
  euler: { name: 'euler', label: 'Euler', className: 'EulerDiscreteScheduler', karras: true, create: (config, options) => new EulerScheduler(config, options) },
  euler_a: {
    name: 'euler_a',
    label: 'Euler a',
    className: 'EulerAncestralDiscreteScheduler',
    karras: false,
    create: (config, options) => new EulerAncestralScheduler(config, options),
  },
  ddim: { name: 'ddim', label: 'DDIM', className: 'DDIMScheduler', karras: false, create: (config, options) => new DdimScheduler(config, options) },
  dpmpp_2m: {
    name: 'dpmpp_2m',
    label: 'DPM++ 2M',
    className: 'DPMSolverMultistepScheduler',
    karras: true,
    create: (config, options) => new DpmSolverMultistepScheduler(config, options),
  },
  lms: { name: 'lms', label: 'LMS', className: 'LMSDiscreteScheduler', karras: true, create: (config, options) => new LmsScheduler(config, options) },
  heun: { name: 'heun', label: 'Heun', className: 'HeunDiscreteScheduler', karras: true, create: (config, options) => new HeunScheduler(config, options) },
  dpmpp_2m_sde: {
    name: 'dpmpp_2m_sde',
    label: 'DPM++ 2M SDE',
    // The same diffusers class as dpmpp_2m (algorithm_type sde-dpmsolver++): dpmpp_2m comes first in SCHEDULER_NAMES,
    // so a config naming the class alone maps to dpmpp_2m.
    className: 'DPMSolverMultistepScheduler',
    karras: true,
    create: (config, options) => new DpmSolverSdeScheduler(config, options),
  },
  unipc: { name: 'unipc', label: 'UniPC', className: 'UniPCMultistepScheduler', karras: true, create: (config, options) => new UniPcScheduler(config, options) },
  lcm: { name: 'lcm', label: 'LCM', className: 'LCMScheduler', karras: false, create: (config, options) => new LcmScheduler(config, options) },
};

/** The row of one scheduler. */
export function schedulerRegistration(name: SchedulerName): SchedulerRegistration {
  return REGISTRY[name];
}

/** Every row, in SCHEDULER_NAMES order. */
export const SCHEDULER_REGISTRY: readonly SchedulerRegistration[] = SCHEDULER_NAMES.map((name) => REGISTRY[name]);
