/**
 * A seeded source of standard-normal noise that reproduces one of torch's generators value for value.
 * The stream continues across calls, as a torch.Generator does: the second `randn` after `manual_seed` gives what
 * torch's second `torch.randn(..., generator=g)` gives.
 */
export interface NoiseGenerator {
  /** Which torch generator this reproduces. */
  readonly device: RngDevice;
  /** The seed the generator was created with (what `manual_seed` got). */
  readonly seed: bigint;
  /** Equivalent of `torch.randn(shape, generator=g)` for a tensor of `count` elements, in C order. */
  randn(count: number): Float32Array;
  /**
   * The same draw as `randn(target.length)`, written into `target` (no allocation: for per-step noise on the hot
   * path). Returns `target`.
   */
  randnInto(target: Float32Array): Float32Array;
}

/** The torch generators the noise can reproduce; the one list the CLI, the config and the bot accept. */
export const RNG_DEVICES = ['cpu', 'cuda'] as const;
export type RngDevice = (typeof RNG_DEVICES)[number];

/** Seeds are unsigned 64-bit, as torch's manual_seed accepts (0 … 2^64−1). */
export const MAX_SEED = (1n << 64n) - 1n;
