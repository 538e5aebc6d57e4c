import type { NoiseGenerator } from '../rng/types.js';

/** The scheduler names the CLI, the bot and the config accept. */
export const SCHEDULER_NAMES = ['pndm', 'euler', 'euler_a', 'ddim', 'dpmpp_2m', 'lms'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

/** The subset of diffusers' scheduler_config.json that our schedulers read. Unknown keys are ignored. */
export interface SchedulerConfig {
  _class_name?: string;
  num_train_timesteps?: number;
  beta_start?: number;
  beta_end?: number;
  beta_schedule?: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2' | string;
  trained_betas?: number[] | null;
  steps_offset?: number;
  set_alpha_to_one?: boolean;
  skip_prk_steps?: boolean;
  clip_sample?: boolean;
  prediction_type?: 'epsilon' | 'v_prediction' | 'sample' | string;
  timestep_spacing?: TimestepSpacing;
  use_karras_sigmas?: boolean;
  [key: string]: unknown;
}

/** Caller's choices layered over the model's scheduler_config.json, as diffusers' `from_config(config, **overrides)`. */
export interface SchedulerOptions {
  karras?: boolean;
  timestepSpacing?: TimestepSpacing;
}

/**
 * One contract for every scheduler, mirroring diffusers:
 *   setTimesteps(n) → timesteps; latents *= initNoiseSigma;
 *   per step: x = scaleModelInput(latents, t); eps = unet(x, t); latents = step(eps, t, latents).
 * Arrays are flat Float32Arrays over the whole (batch, 4, h, w) latent tensor.
 */
export interface Scheduler {
  readonly name: SchedulerName;
  /** Timesteps for the current setTimesteps call, as diffusers' `scheduler.timesteps` (may be fractional). */
  readonly timesteps: Float64Array;
  /** Sigmas where the scheduler has them (Euler, LMS, DPM++), else null. */
  readonly sigmas: Float64Array | null;
  /** What the initial N(0,1) noise is multiplied by. */
  readonly initNoiseSigma: number;
  setTimesteps(numInferenceSteps: number): void;
  /** Returns the UNet input for timestep `t`; may return `sample` itself when no scaling applies. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /**
   * Advances `sample` by one step given the model output. Ancestral schedulers draw their noise from `generator`.
   * Returns the new latents (may reuse an internal buffer: copy if you keep it past the next step).
   */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, generator?: NoiseGenerator): Float32Array;
}
