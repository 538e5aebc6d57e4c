import { randomInt } from 'node:crypto';
import { InvalidRequestError } from '../errors.js';
import { TorchCpuGenerator } from './mt19937.js';
import { PerImageGenerators } from './per-image.js';
import { TorchCudaGenerator, type TorchCudaGeneratorOptions } from './philox.js';
import { MAX_SEED, RNG_DEVICES, type NoiseGenerator, type RngDevice } from './types.js';

export { MAX_SEED, RNG_DEVICES } from './types.js';
export type { NoiseGenerator, RngDevice } from './types.js';
export { TorchCpuGenerator, MersenneTwister } from './mt19937.js';
export { TorchCudaGenerator, type TorchCudaGeneratorOptions } from './philox.js';
export { PerImageGenerators } from './per-image.js';

export type NoiseGeneratorOptions = TorchCudaGeneratorOptions;

/**
 * The generator diffusers gets from `torch.Generator(device).manual_seed(seed)`: 'cpu' is torch's Mersenne Twister,
 * 'cuda' torch's Philox CUDA generator, both reproduced in JS so no GPU is needed for either.
 */
export function createNoiseGenerator(device: RngDevice, seed: bigint, options: NoiseGeneratorOptions = {}): NoiseGenerator {
  if (typeof seed !== 'bigint' || seed < 0n || seed > MAX_SEED) {
    throw new InvalidRequestError(`Seed must be a whole number from 0 to ${MAX_SEED}, got ${String(seed)}.`);
  }
  switch (device) {
    case 'cpu':
      return new TorchCpuGenerator(seed);
    case 'cuda':
      return new TorchCudaGenerator(seed, options);
    default:
      throw new InvalidRequestError(`Unknown noise source "${String(device)}"; use one of: ${RNG_DEVICES.join(', ')}.`);
  }
}

/**
 * The noise source of a generation: one generator seeded `seed` for the whole batch (diffusers'
 * `generator=torch.Generator(device).manual_seed(seed)` with `num_images_per_prompt`), or, for a list of seeds, one
 * generator per image (diffusers' `generator=[… manual_seed(s) for s in seeds]`, see per-image.ts).
 */
export function createImageNoise(device: RngDevice, seed: bigint | readonly bigint[], options: NoiseGeneratorOptions = {}): NoiseGenerator {
  if (typeof seed === 'bigint') return createNoiseGenerator(device, seed, options);
  return new PerImageGenerators(seed.map((imageSeed) => createNoiseGenerator(device, imageSeed, options)));
}

/** Parses a seed typed by a person: decimal digits, 0 … 2^64−1 (surrounding spaces allowed). */
export function parseSeed(text: string): bigint {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) {
    throw new InvalidRequestError(`Seed must be a whole number from 0 to ${MAX_SEED}, got "${text}".`);
  }
  const seed = BigInt(trimmed);
  if (seed > MAX_SEED) throw new InvalidRequestError(`Seed ${trimmed} is too large: the largest seed is ${MAX_SEED}.`);
  return seed;
}

/** What A1111 users type for "a random seed". */
export const RANDOM_SEED_TEXT = '-1';

/**
 * True for `-1`, which A1111's seed box and API take as "draw a random seed": people who come from it type that where
 * they would leave the seed out. Callers check this before `parseSeed`.
 */
export function meansRandomSeed(text: string): boolean {
  return text.trim() === RANDOM_SEED_TEXT;
}

/** `parseSeed`, except that `-1` (A1111's "random") gives 'random': the caller draws the seed (and shows it). */
export function parseSeedOrRandom(text: string): bigint | 'random' {
  return meansRandomSeed(text) ? 'random' : parseSeed(text);
}

/** Accepts what `parseSeed` accepts and RNG_DEVICES' names; narrows a string to a device. */
export function parseRngDevice(text: string): RngDevice {
  const device = text.trim().toLowerCase();
  if ((RNG_DEVICES as readonly string[]).includes(device)) return device as RngDevice;
  throw new InvalidRequestError(`Unknown noise source "${text}"; use one of: ${RNG_DEVICES.join(', ')}.`);
}

/**
 * A fresh seed for requests that name none. Kept below 2^32: torch's CPU generator only uses a seed's low 32 bits,
 * so larger random seeds would add no variety there; A1111 also draws its random seeds from this range; and a
 * ten-digit number is easy to read back and type.
 */
export function randomSeed(): bigint {
  return BigInt(randomInt(0, 2 ** 32));
}
