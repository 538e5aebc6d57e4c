import type { NoiseGenerator } from '../rng/types.js';

/** The scheduler names the CLI, the bot and the config accept. */
export const SCHEDULER_NAMES = ['pndm', 'euler', 'euler_a', 'ddim', 'dpmpp_2m', 'lms', 'heun', 'dpmpp_2m_sde', 'unipc', 'lcm'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** The schedulers with a Karras option (diffusers' `use_karras_sigmas`); the registry's rows say the same (a test checks). */
export const KARRAS_SCHEDULERS = ['euler', 'dpmpp_2m', 'lms', 'heun', 'dpmpp_2m_sde', 'unipc'] as const satisfies readonly SchedulerName[];

/**
 * The samplers the bot offers and the config's default accepts, as A1111 lists them: every scheduler, and the Karras
 * variant (`<scheduler>_karras`) of those that have one, next to it.
 */
export const SAMPLER_NAMES = [
  'pndm',
  'euler',
  'euler_karras',
  'euler_a',
  'ddim',
  'dpmpp_2m',
  'dpmpp_2m_karras',
  'lms',
  'lms_karras',
  'heun',
  'heun_karras',
  'dpmpp_2m_sde',
  'dpmpp_2m_sde_karras',
  'unipc',
  'unipc_karras',
  'lcm',
] as const satisfies
  readonly (SchedulerName | `${(typeof KARRAS_SCHEDULERS)[number]}_karras`)[];
export type SamplerName = (typeof SAMPLER_NAMES)[number];

export type TimestepSpacing = 'linspace' | 'leading' | 'trailing';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['linspace', 'leading', 'trailing'];

/**
 * The subset of diffusers' scheduler_config.json that our schedulers read. Unknown keys are ignored; keys a
 * scheduler takes but the file lacks get that scheduler's own diffusers default (as `from_config` does).
 */
export interface SchedulerConfig {
  _class_name?: string;
  /** Keys the saving class filled with its defaults; diffusers ignores them when loading into another class. */
  _use_default_values?: string[];
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
  /** `use_karras_sigmas=True` (Euler, LMS, DPM++ 2M, DPM++ 2M SDE, Heun, UniPC only: diffusers has no Karras option for the others). */
  karras?: boolean;
  /** `timestep_spacing=…` (every scheduler). */
  timestepSpacing?: TimestepSpacing;
}

/**
 * One contract for every scheduler, mirroring diffusers:
 *   setTimesteps(n) → timesteps; latents *= initNoiseSigma;
 *   for t of timesteps: x = scaleModelInput(latents, t); eps = unet(x, t); latents = step(eps, t, latents).
 * Arrays are flat Float32Arrays over the whole (batch, 4, h, w) latent tensor.
 *
 * Buffer ownership (so the hot loop allocates nothing in steady state):
 * - `scaleModelInput` returns either `sample` itself or a buffer the scheduler owns and overwrites on the next
 *   `scaleModelInput` call.
 * - `step` never modifies `modelOutput` or `sample`, and copies whatever it keeps between steps, so the caller may
 *   reuse both buffers. It returns a buffer the scheduler owns: it stays valid until the *second* following `step`
 *   call (two buffers alternate), so passing the previous result back as `sample` is safe. Copy it to keep it longer.
 * - Steps must be called in schedule order with the timesteps of `timesteps` (the multistep schedulers keep
 *   history); `setTimesteps` starts a new generation.
 */
export interface Scheduler {
  readonly name: SchedulerName;
  /** A1111-style sampler name for PNG metadata, e.g. "Euler a", "DPM++ 2M Karras", "PLMS". */
  readonly displayName: string;
  /** Whether Karras sigmas are in effect (from the options or the model's config). */
  readonly karras: boolean;
  /** The timestep spacing in effect. */
  readonly timestepSpacing: TimestepSpacing;
  /**
   * Timesteps for the current setTimesteps call, as diffusers' `scheduler.timesteps` (float32 values, fractional for
   * Euler/LMS/Heun). Iterate over all of them: the count can differ from the number of steps asked for (PNDM repeats
   * one timestep; Heun visits all but the first twice, 2n − 1 in all; diffusers' trailing spacing can yield one extra
   * for some step counts).
   */
  readonly timesteps: Float64Array;
  /** Sigmas where the scheduler has them (Euler, Euler a, LMS, DPM++, Heun, UniPC), one more than timesteps; else null. */
  readonly sigmas: Float64Array | null;
  /** What the initial N(0,1) noise is multiplied by (a float32 value, as diffusers' tensor). */
  readonly initNoiseSigma: number;
  /** Resets the per-generation state and computes the schedule for `numInferenceSteps` (1 … num_train_timesteps). */
  setTimesteps(numInferenceSteps: number): void;
  /**
   * diffusers' `scheduler.order` where it is not 1: how many entries of `timesteps` one step takes (Heun: 2), so that
   * img2img's tail of the schedule starts at `t_start · order`. Absent means 1.
   */
  readonly timestepsPerStep?: number;
  /**
   * diffusers' `set_begin_index`, on the schedulers that have it: the first step of this generation is at
   * `timesteps[index]` (img2img starts mid-schedule), instead of looking its timestep up. Call after `setTimesteps`
   * (which clears it) and before `addNoise` and the first step.
   */
  setBeginIndex?(index: number): void;
  /**
   * diffusers' `add_noise(original, noise, timesteps[:1])` as img2img calls it before the first step: `original`
   * (the image latents) noised to the level of `timestep`, the first timestep of the run. A new array.
   */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array;
  /** Returns the UNet input for timestep `t`; may return `sample` itself when no scaling applies. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /**
   * Advances `sample` by one step given the (guided) model output. Schedulers that add noise (Euler a, SDE DPM++, LCM)
   * draw it from `generator`, one `randn` of the sample's size per step, as diffusers' `randn_tensor` does. Draw the
   * whole (n, 4, h, w) tensor in one `randn`/`randnInto` call (as `StepNoise` does): the generator may be one per image
   * (`PerImageGenerators`, rng/per-image.ts), which fills row i from image i's generator only when it sees the whole
   * tensor.
   */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, generator?: NoiseGenerator): Float32Array;
  /**
   * Optional, for speed: draws now the noise the next `step` will add (Euler a, SDE DPM++, LCM), for `count` latent values,
   * so the pipeline can do it while the UNet runs (`const run = session.run(…); scheduler.prepareStep?.(generator,
   * n); await run`). The stream order is the same as drawing inside `step`. Schedulers without noise do nothing.
   */
  prepareStep?(generator: NoiseGenerator, count: number): void;
  /**
   * Optional: whether `linearStep` can express every step of this configuration (it cannot, e.g., for DDIM with
   * clip_sample, whose clamp is not linear). Depends on the configuration only, so it is asked once before a
   * generation. Schedulers without `linearStep` (PNDM's PLMS, DPM++ 2M, LMS: multistep, they combine earlier
   * predictions) leave both out.
   */
  canStepLinearly?(): boolean;
  /**
   * Optional: the step for `timestep` as linear coefficients, for a loop that does the arithmetic elsewhere (on the
   * UNet's device, see device-step.ts):
   *
   *     latents' = latents·a + modelOutput·b + noise·n,   next UNet input = latents'·nextInputScale
   *
   * It advances the scheduler exactly as `step` does (step index, noise drawn from `generator` in the same order, so
   * the noise stream is identical), so a generation uses either `step` or `linearStep` for every step, never a mix.
   * `scaleModelInput` is still called for the first step (the initial latents are on the CPU); later UNet inputs are
   * `latents'·nextInputScale`. Throws when `canStepLinearly()` is false.
   */
  linearStep?(timestep: number, count: number, generator?: NoiseGenerator): LinearStep;
}

/** One step of a first-order scheduler as coefficients (see `Scheduler.linearStep`). */
export interface LinearStep {
  /** Factor on the current latents. */
  latents: number;
  /** Factor on the (guided) model output. */
  prediction: number;
  /** Factor on `noiseValues`; 0 when the step adds no noise. */
  noise: number;
  /**
   * The noise this step adds (Euler a), `count` values drawn from the generator exactly as `step` would; owned by the
   * scheduler and overwritten by the next step's draw. Null when the step adds none.
   */
  noiseValues: Float32Array | null;
  /** What the next step's `scaleModelInput` would multiply the new latents by (1 after the last step). */
  nextInputScale: number;
}

/** Whether a scheduler, as configured, offers `linearStep`. */
export function supportsLinearStep(scheduler: Scheduler): scheduler is Scheduler & Required<Pick<Scheduler, 'linearStep' | 'canStepLinearly'>> {
  return typeof scheduler.linearStep === 'function' && typeof scheduler.canStepLinearly === 'function' && scheduler.canStepLinearly();
}
