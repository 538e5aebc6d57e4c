/** Latents to pixels: the VAE decoder and diffusers' post-processing. */
import type { StableDiffusionModel } from './model.js';
import { roundHalfEven } from './numeric.js';
import type { LatentShape } from './request.js';
import { firstOutput, readFloats, TensorFeeder } from './tensors.js';

export interface DecodedImage {
  /** 8-bit RGB, row-major HWC. */
  rgb: Uint8Array;
  /** The same image as floats in [0, 1], HWC (what the safety checker reads). */
  float: Float32Array;
}

/**
 * VAE-decodes image `index` (one at a time keeps memory flat for big batches) and post-processes as diffusers:
 * `(x / 2 + 0.5).clamp(0, 1)`, then ×255 rounded half to even. Returns 8-bit RGB and the float image (HWC).
 */
export async function decodeLatents(
  model: Pick<StableDiffusionModel, 'vaeDecoder' | 'vaeScalingFactor'>,
  latents: Float32Array,
  shape: LatentShape,
  index: number,
): Promise<DecodedImage> {
  const [, channels, h, w] = shape;
  const { vaeDecoder, vaeScalingFactor } = model;
  const perImage = channels * h * w;
  const input = new Float32Array(perImage);
  const source = latents.subarray(index * perImage, (index + 1) * perImage);
  for (let i = 0; i < perImage; i++) input[i] = source[i]! / vaeScalingFactor;
  const feed = TensorFeeder.forInput(vaeDecoder.session, 'latent_sample', [1, channels, h, w]);
  const outputs = await vaeDecoder.session.run({ latent_sample: feed.setFloats(input) });
  const sample = firstOutput(vaeDecoder.session, outputs);
  const [, , height, width] = sample.dims as [number, number, number, number];
  const planar = readFloats(sample, new Float32Array(3 * height * width));
  const plane = height * width;
  const rgb = new Uint8Array(plane * 3);
  const float = new Float32Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const value = Math.fround(Math.fround(planar[c * plane + p]! / 2) + 0.5);
      const clamped = value < 0 ? 0 : value > 1 ? 1 : value;
      float[p * 3 + c] = clamped;
      rgb[p * 3 + c] = roundHalfEven(Math.fround(clamped * 255));
    }
  }
  return { rgb, float };
}
