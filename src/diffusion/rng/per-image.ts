/**
 * diffusers' list of generators as one noise source. With `generator=[g₀, g₁, …]`, diffusers' `randn_tensor` draws a
 * (n, …) tensor row by row: row i is `torch.randn((1, …), generator=gᵢ)`, and the rows are concatenated. Its
 * schedulers pass the same list to `randn_tensor` for their per-step noise (Euler a, DPM++ 2M SDE, LCM), so every
 * draw of the whole latent tensor is split the same way. This class is that split behind the `NoiseGenerator`
 * contract: the pipeline hands it to a scheduler exactly where it would hand one generator, and no scheduler needs to
 * know whether its noise comes from one generator or one per image. Image i's stream is then the stream a generation
 * of image i alone (batch 1, seed i's generator) sees, so batching changes the UNet's rounding, not the noise.
 */
import type { NoiseGenerator, RngDevice } from './types.js';

export class PerImageGenerators implements NoiseGenerator {
  readonly device: RngDevice;
  /** The first image's seed (the contract's one seed); each image's own is `generators[i].seed`. */
  readonly seed: bigint;

  constructor(readonly generators: readonly NoiseGenerator[]) {
    const first = generators[0];
    if (!first) throw new Error('one generator per image needs at least one generator');
    if (generators.some((generator) => generator.device !== first.device)) throw new Error('per-image generators must reproduce the same torch device');
    this.device = first.device;
    this.seed = first.seed;
  }

  randn(count: number): Float32Array {
    return this.randnInto(new Float32Array(count));
  }

  /** Row i of `target` (its i-th equal share, C order) from generator i, as diffusers' `randn_tensor` does. */
  randnInto(target: Float32Array): Float32Array {
    const rows = this.generators.length;
    if (target.length % rows !== 0) throw new Error(`cannot split ${target.length} noise values into ${rows} equal image rows`);
    const rowLength = target.length / rows;
    for (const [row, generator] of this.generators.entries()) generator.randnInto(target.subarray(row * rowLength, (row + 1) * rowLength));
    return target;
  }
}
