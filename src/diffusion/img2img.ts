/**
 * Where an img2img generation starts, as diffusers' StableDiffusionImg2ImgPipeline `get_timesteps` and
 * `prepare_latents`: the tail of the schedule that `strength` keeps, and the image latents sampled from the VAE's
 * distribution and noised to the first timestep of that tail. The random draws are diffusers' and in its order, from
 * the generation's generator: first the latent sample (`latent_dist.sample(generator)`), then the noise
 * (`randn_tensor(shape, generator)`); with one generator per image each image draws both from its own.
 */
import type { NoiseGenerator } from './rng/types.js';
import type { Scheduler } from './schedulers/types.js';
import type { DenoiseStart } from './steppers.js';
import { sampleImageLatents, type LatentDistribution } from './vae-encode.js';

/**
 * `get_timesteps(steps, strength)`: init_timestep = min(int(steps · strength), steps), t_start = steps − init_timestep,
 * the timesteps from `t_start · order` on, and `set_begin_index(t_start · order)` on schedulers that have it.
 * `setTimesteps(steps)` must have been called.
 */
export function img2imgTimesteps(scheduler: Scheduler, steps: number, strength: number): Float64Array {
  const initTimestep = Math.min(Math.floor(steps * strength), steps);
  const tStart = Math.max(steps - initTimestep, 0);
  const begin = tStart * (scheduler.timestepsPerStep ?? 1);
  scheduler.setBeginIndex?.(begin);
  return scheduler.timesteps.slice(begin);
}

export interface Img2ImgStartOptions {
  steps: number;
  strength: number;
  /** Images in the batch. */
  count: number;
  /** Whether `generator` is one generator per image (a list of seeds), which changes what the latent sample draws. */
  perImageGenerators: boolean;
  /** The VAE's latent scaling factor (0.18215 for SD 1.5, or what the model folder says). */
  scalingFactor: number;
}

/**
 * The scheduler's tail of timesteps and the latents at its first: `scheduler.add_noise(image_latents, noise,
 * timesteps[:1])`, with no `init_noise_sigma` scaling (diffusers' img2img applies none).
 */
export function img2imgStart(scheduler: Scheduler, generator: NoiseGenerator, image: LatentDistribution, options: Img2ImgStartOptions): DenoiseStart {
  const timesteps = img2imgTimesteps(scheduler, options.steps, options.strength);
  const first = timesteps[0];
  if (first === undefined) throw new RangeError(`strength ${options.strength} leaves no step of ${options.steps}`);
  const imageLatents = sampleImageLatents(image, generator, options.count, options.perImageGenerators, options.scalingFactor);
  const noise = generator.randn(imageLatents.length);
  return { scheduler, generator, timesteps, latents: scheduler.addNoise(imageLatents, noise, first) };
}
