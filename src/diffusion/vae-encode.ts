/**
 * Pixels to latents for img2img, as diffusers' StableDiffusionImg2ImgPipeline: the init image resized to the request's
 * size (sharp, Lanczos, as diffusers' VaeImageProcessor resizes), normalised to `2x − 1`, VAE-encoded to the latent
 * distribution's moments, and sampled as `DiagonalGaussianDistribution.sample(generator)` × the scaling factor.
 *
 * The exported `vae_encoder` (diffusers' convert script, optimum) samples inside the graph with RandomNormalLike, ORT's
 * own randomness that no seed reproduces. At load, `exposeLatentParameters` rewrites it (at protobuf level, as
 * clip-skip.ts does) to output what its `quant_conv` makes: the moments [b, 8, h, w], mean then log-variance, which
 * diffusers' `AutoencoderKL.encode` wraps in the distribution. The node is found by the module path the exporter
 * writes into node names (`/quant_conv/…`). An export that already outputs `latent_parameters` (newer optimum) is
 * taken as it is. The clamp of the log-variance to [−30, 20] and the sampling are done here, in diffusers' float32
 * order, with the noise drawn from the generation's torch-compatible generator.
 */
import sharp from 'sharp';
import { InvalidRequestError, ModelFileError } from './errors.js';
import type { ModelPart } from './model.js';
import {
  concat,
  fields,
  GRAPH_NODE,
  GRAPH_OUTPUT,
  lengthDelimited,
  MODEL_GRAPH as GRAPH,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  stringOf,
  subMessage,
  VALUE_INFO_NAME,
  VALUE_INFO_TYPE,
  WIRE_BYTES,
} from './onnx-proto.js';
import type { NoiseGenerator } from './rng/types.js';
import { readFloats, TensorFeeder } from './tensors.js';

/** The encoder output the rewrite exposes (optimum's name for the same tensor). */
export const LATENT_PARAMETERS_OUTPUT = 'latent_parameters';

export class VaeEncoderRewriteError extends Error {
  override name = 'VaeEncoderRewriteError';
}


const text = (value: string) => new TextEncoder().encode(value);

/**
 * Makes a serialized VAE encoder output the latent distribution's moments as `latent_parameters` instead of a sample:
 * an Identity node from `quant_conv`'s output, and that one graph output in place of the export's (typed as the
 * export's output was: same element type, four dynamic axes). The sampling nodes are left without a consumer.
 * An encoder that already has a `latent_parameters` output is returned unchanged.
 */
export function exposeLatentParameters(model: Uint8Array): Uint8Array {
  const graph = subMessage(model, GRAPH);
  if (graph === null) throw new VaeEncoderRewriteError('not an ONNX model: no graph');
  const outputs = [...fields(graph)].filter((field) => field.number === GRAPH_OUTPUT && field.wireType === WIRE_BYTES);
  if (outputs.some((field) => stringOf(subMessage(field.payload, VALUE_INFO_NAME)) === LATENT_PARAMETERS_OUTPUT)) return model;
  const output = outputs[0];
  if (outputs.length !== 1 || output === undefined) throw new VaeEncoderRewriteError(`expected one output, found ${outputs.length}`);
  const outputType = subMessage(output.payload, VALUE_INFO_TYPE);
  if (outputType === null) throw new VaeEncoderRewriteError('its output has no type');

  const quantConv: string[] = [];
  for (const field of fields(graph)) {
    if (field.number !== GRAPH_NODE || field.wireType !== WIRE_BYTES) continue;
    let name = '';
    let opType = '';
    const nodeOutputs: string[] = [];
    for (const part of fields(field.payload)) {
      if (part.wireType !== WIRE_BYTES) continue;
      if (part.number === NODE_NAME) name = stringOf(part.payload);
      else if (part.number === NODE_OP_TYPE) opType = stringOf(part.payload);
      else if (part.number === NODE_OUTPUT) nodeOutputs.push(stringOf(part.payload));
    }
    if (opType === 'Conv' && /(^|\/)quant_conv\//.test(name)) quantConv.push(...nodeOutputs);
  }
  const moments = quantConv[0];
  if (quantConv.length !== 1 || moments === undefined) throw new VaeEncoderRewriteError(`expected one quant_conv Conv node, found ${quantConv.length}`);

  const identity = concat([
    ...lengthDelimited(NODE_INPUT, [text(moments)]),
    ...lengthDelimited(NODE_OUTPUT, [text(LATENT_PARAMETERS_OUTPUT)]),
    ...lengthDelimited(NODE_NAME, [text(`/${LATENT_PARAMETERS_OUTPUT}/Identity`)]),
    ...lengthDelimited(NODE_OP_TYPE, [text('Identity')]),
  ]);
  const valueInfo = concat([...lengthDelimited(VALUE_INFO_NAME, [text(LATENT_PARAMETERS_OUTPUT)]), ...lengthDelimited(VALUE_INFO_TYPE, [outputType])]);
  const graphParts: Uint8Array[] = [];
  for (const field of fields(graph)) if (!(field.number === GRAPH_OUTPUT && field.wireType === WIRE_BYTES)) graphParts.push(field.raw);
  graphParts.push(...lengthDelimited(GRAPH_NODE, [identity]), ...lengthDelimited(GRAPH_OUTPUT, [valueInfo]));
  const modelParts: Uint8Array[] = [];
  for (const field of fields(model)) {
    if (field.number === GRAPH && field.wireType === WIRE_BYTES) modelParts.push(...lengthDelimited(GRAPH, graphParts));
    else modelParts.push(field.raw);
  }
  return concat(modelParts);
}

/**
 * The init image as the VAE encoder's input: decoded by sharp (any format it reads; alpha dropped, as PIL's
 * `convert("RGB")` drops it), resized to `width`×`height` with Lanczos when its size differs, and normalised from
 * [0, 255] to [−1, 1] (`x / 255 * 2 − 1` in float32, diffusers' `normalize`), planar (1, 3, height, width).
 */
export async function preprocessInitImage(data: Uint8Array, width: number, height: number): Promise<Float32Array> {
  let rgb: Buffer;
  try {
    let image = sharp(data, { failOn: 'error' }).removeAlpha().toColourspace('srgb');
    const meta = await sharp(data).metadata();
    if (meta.width !== width || meta.height !== height) image = image.resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
    const raw = await image.raw().toBuffer({ resolveWithObject: true });
    if (raw.data.length !== width * height * 3) throw new Error(`decoded as ${raw.info.width}x${raw.info.height}x${raw.info.channels}`);
    rgb = raw.data;
  } catch (error) {
    throw new InvalidRequestError(`the init image could not be read (${error instanceof Error ? error.message.split('\n')[0] : String(error)}); use a PNG, JPEG or WebP image.`);
  }
  const plane = width * height;
  const pixels = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) pixels[c * plane + p] = Math.fround(Math.fround(rgb[p * 3 + c]! / 255) * 2) - 1;
  }
  return pixels;
}

/** The latent distribution of one image: mean and log-variance (clamped), each (1, 4, h, w). */
export interface LatentDistribution {
  mean: Float32Array;
  logvar: Float32Array;
}

/**
 * VAE-encodes one preprocessed image (1, 3, H, W) to its latent distribution, as diffusers'
 * `DiagonalGaussianDistribution(moments)`: `torch.chunk(moments, 2, dim=1)`, log-variance clamped to [−30, 20].
 */
export async function encodeLatentDistribution(encoder: ModelPart, vaeScaleFactor: number, pixels: Float32Array, width: number, height: number): Promise<LatentDistribution> {
  if (!encoder.outputs.has(LATENT_PARAMETERS_OUTPUT)) {
    throw new ModelFileError(encoder.file, `has no ${LATENT_PARAMETERS_OUTPUT} output: its graph could not be rewritten to give the latent distribution`);
  }
  const feed = TensorFeeder.forInput(encoder.session, 'sample', [1, 3, height, width]);
  const outputs = await encoder.session.run({ sample: feed.setFloats(pixels) }, [LATENT_PARAMETERS_OUTPUT]);
  const moments = outputs[LATENT_PARAMETERS_OUTPUT];
  if (moments === undefined) throw new Error(`the VAE encoder returned no ${LATENT_PARAMETERS_OUTPUT}`);
  const [batch, channels, h, w] = moments.dims as [number, number, number, number];
  if (batch !== 1 || channels !== 8 || h * vaeScaleFactor !== height || w * vaeScaleFactor !== width) {
    throw new ModelFileError(encoder.file, `gave latent parameters of shape [${moments.dims.join(', ')}] for a ${width}x${height} image`);
  }
  const values = readFloats(moments, new Float32Array(8 * h * w));
  const half = 4 * h * w;
  const mean = values.slice(0, half);
  const logvar = values.slice(half);
  for (let i = 0; i < half; i++) logvar[i] = Math.min(Math.max(logvar[i]!, -30), 20);
  return { mean, logvar };
}

/**
 * `latent_dist.sample(generator) × scaling_factor` for `count` images from one distribution: with one generator
 * (diffusers encodes the image once and repeats its latents for `num_images_per_prompt`) one draw of (1, 4, h, w),
 * repeated; with one generator per image (diffusers encodes the image once per generator) image i's draw from
 * generator i, which `PerImageGenerators` gives for a draw of (count, 4, h, w). `x = mean + exp(0.5 · logvar) · ε`
 * in float32, then × the scaling factor.
 */
export function sampleImageLatents(distribution: LatentDistribution, generator: NoiseGenerator, count: number, perImageGenerators: boolean, scalingFactor: number): Float32Array {
  const { mean, logvar } = distribution;
  const perImage = mean.length;
  const std = new Float32Array(perImage);
  for (let i = 0; i < perImage; i++) std[i] = Math.exp(Math.fround(0.5 * logvar[i]!));
  const draws = perImageGenerators ? generator.randn(count * perImage) : generator.randn(perImage);
  const scaling = Math.fround(scalingFactor);
  const latents = new Float32Array(count * perImage);
  for (let image = 0; image < count; image++) {
    const draw = perImageGenerators ? image * perImage : 0;
    for (let i = 0; i < perImage; i++) {
      const sample = Math.fround(mean[i]! + Math.fround(std[i]! * draws[draw + i]!));
      latents[image * perImage + i] = scaling * sample;
    }
  }
  return latents;
}
