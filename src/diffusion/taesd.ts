/**
 * Live previews through madebyollin's TAESD ("tiny autoencoder for Stable Diffusion"): a 1.2 M-parameter decoder
 * distilled from SD's VAE that turns latents into a recognisable picture at full size, where the colour map
 * (preview.ts) gives a blurry one at 1/8 size.
 *
 * Facts from taesd's source and README (github.com/madebyollin/taesd), which the code relies on:
 * - the decoder takes the latents as the UNet makes them: TAESD's latent scale factor is 1, so they are NOT divided
 *   by SD's 0.18215 as the VAE's are (its first layer clamps them softly, tanh(x/3)·3);
 * - taesd.py's `Decoder` gives an image in [0, 1]; diffusers' `AutoencoderTiny` wraps the same layers and scales to
 *   [−1, 1] (`DecoderTiny.forward`: `x.mul(2).sub(1)`), and so does its ONNX export by optimum (folder layout
 *   `vae_decoder/model.onnx`, input `latent_sample`, output `sample`, as the SD VAE decoder's).
 * Neither output is clamped; previews clamp to [0, 1] as ComfyUI and A1111 do.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { ModelFileError } from './errors.js';
import type { LatentShape } from './request.js';
import { firstOutput, readFloats, TensorFeeder } from './tensors.js';
import { isFile } from '../util/fs.js';
import { TAESD_DECODER_FILES } from '../util/taesd-files.js';

/** The input name of diffusers' (optimum's) export, whose output is in [−1, 1]; any other name means [0, 1]. */
const DIFFUSERS_INPUT_NAME = 'latent_sample';


/** One preview image: 8-bit RGB, row-major HWC. */
export interface RgbImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** Finds the decoder's ONNX file: the path itself when it is a file, else the first of TAESD_DECODER_FILES in it. */
export async function resolveTaesdFile(path: string): Promise<string> {
  const info = await stat(path).catch(() => null);
  if (!info) throw new ModelFileError(path, 'preview decoder (model.previewDecoder) does not exist');
  if (info.isFile()) return path;
  for (const candidate of TAESD_DECODER_FILES) {
    if (await isFile(join(path, candidate))) return join(path, candidate);
  }
  throw new ModelFileError(path, `preview decoder folder has none of ${TAESD_DECODER_FILES.join(', ')}`);
}

export class TaesdDecoder {
  private constructor(
    readonly file: string,
    private readonly session: InferenceSession,
    /** Whether the output is diffusers' [−1, 1] image (else taesd.py's [0, 1]). */
    readonly signedOutput: boolean,
  ) {}

  /** Opens the decoder at `path` (a file, or a folder as resolveTaesdFile reads it) with the given session factory. */
  static async open(path: string, createSession: (file: string) => Promise<InferenceSession>): Promise<TaesdDecoder> {
    const file = await resolveTaesdFile(path);
    let session: InferenceSession;
    try {
      session = await createSession(file);
    } catch (error) {
      throw new ModelFileError(file, `preview decoder cannot be loaded by ONNX Runtime: ${(error as Error).message.split('\n')[0]}`, { cause: error });
    }
    if (session.inputNames.length !== 1 || session.outputNames.length < 1) {
      await session.release();
      throw new ModelFileError(file, `is not a TAESD decoder (inputs: ${session.inputNames.join(', ')}; one latent input expected)`);
    }
    return new TaesdDecoder(file, session, session.inputNames[0] === DIFFUSERS_INPUT_NAME);
  }

  /**
   * The decoder's image, as floats in [0, 1] before clamping, CHW per image, for every image of latents shaped
   * (n, 4, h, w) in one run. Exposed for the parity test; previews use `decode`.
   */
  async decodeFloats(latents: Float32Array, shape: LatentShape): Promise<{ image: Float32Array; dims: [number, number, number, number] }> {
    const inputName = this.session.inputNames[0]!;
    const count = shape.reduce((product, dim) => product * dim, 1);
    const feed = TensorFeeder.forInput(this.session, inputName, shape);
    const outputs = await this.session.run({ [inputName]: feed.setFloats(latents.subarray(0, count)) });
    const output = firstOutput(this.session, outputs);
    const dims = output.dims as [number, number, number, number];
    if (dims.length !== 4 || dims[0] !== shape[0] || dims[1] !== 3) {
      throw new Error(`TAESD decoder ${this.file} gave an output of shape [${dims.join(', ')}], expected [${shape[0]}, 3, H, W]`);
    }
    const image = readFloats(output, new Float32Array(output.size));
    if (this.signedOutput) for (let i = 0; i < image.length; i++) image[i] = image[i]! / 2 + 0.5;
    return { image, dims };
  }

  /** One 8-bit RGB image (HWC) per latent image, clamped to [0, 1]. */
  async decode(latents: Float32Array, shape: LatentShape): Promise<RgbImage[]> {
    const { image, dims } = await this.decodeFloats(latents, shape);
    const [count, , height, width] = dims;
    const plane = height * width;
    const images: RgbImage[] = [];
    for (let index = 0; index < count; index++) {
      const base = index * 3 * plane;
      const rgb = new Uint8Array(plane * 3);
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) {
          const value = image[base + c * plane + p]!;
          rgb[p * 3 + c] = Math.round((value < 0 ? 0 : value > 1 ? 1 : value) * 255);
        }
      }
      images.push({ rgb, width, height });
    }
    return images;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
