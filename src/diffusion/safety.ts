import type * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import type { ImageProcessorConfig, ModelPart } from './model.js';
import { TensorFeeder } from './tensors.js';

/**
 * CLIP image preprocessing as transformers' CLIPImageProcessor does it on diffusers' PIL image: resize the
 * shortest edge (bicubic), centre crop, rescale by 1/255, normalise with the model's mean and std, CHW float32.
 * All parameters come from feature_extractor/preprocessor_config.json.
 */
export async function preprocessForClip(rgb: Uint8Array, width: number, height: number, config: ImageProcessorConfig): Promise<{ data: Float32Array; size: [number, number] }> {
  const shortest = typeof config.size === 'number' ? config.size : config.size?.shortest_edge ?? 224;
  const crop = typeof config.crop_size === 'number' ? { height: config.crop_size, width: config.crop_size } : config.crop_size ?? { height: shortest, width: shortest };
  const mean = config.image_mean ?? [0.48145466, 0.4578275, 0.40821073];
  const std = config.image_std ?? [0.26862954, 0.26130258, 0.27577711];
  const rescale = config.do_rescale === false ? 1 : config.rescale_factor ?? 1 / 255;

  let image = sharp(rgb, { raw: { width, height, channels: 3 } });
  let resizedWidth = width;
  let resizedHeight = height;
  if (config.do_resize !== false) {
    // transformers' get_resize_output_image_size: the short side becomes `shortest`, the long side int(scaled).
    if (width <= height) {
      resizedWidth = shortest;
      resizedHeight = Math.trunc((shortest * height) / width);
    } else {
      resizedHeight = shortest;
      resizedWidth = Math.trunc((shortest * width) / height);
    }
    image = image.resize(resizedWidth, resizedHeight, { kernel: 'cubic', fit: 'fill' });
  }
  let outWidth = resizedWidth;
  let outHeight = resizedHeight;
  if (config.do_center_crop !== false) {
    const top = Math.trunc((resizedHeight - crop.height) / 2);
    const left = Math.trunc((resizedWidth - crop.width) / 2);
    // Materialise the resize first so the crop applies to the resized image, not the source.
    const resized = await image.raw().toBuffer();
    image = sharp(resized, { raw: { width: resizedWidth, height: resizedHeight, channels: 3 } }).extract({
      left: Math.max(0, left),
      top: Math.max(0, top),
      width: crop.width,
      height: crop.height,
    });
    outWidth = crop.width;
    outHeight = crop.height;
  }
  const pixels = await image.raw().toBuffer();
  const plane = outWidth * outHeight;
  const data = new Float32Array(3 * plane);
  const normalize = config.do_normalize !== false;
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const value = pixels[p * 3 + c]! * rescale;
      data[c * plane + p] = normalize ? (value - mean[c]!) / std[c]! : value;
    }
  }
  return { data, size: [outHeight, outWidth] };
}

/**
 * Runs the exported StableDiffusionSafetyChecker on one image (the export works at batch 1, so diffusers runs it
 * image by image too) and returns its NSFW verdict.
 */
export async function checkSafety(
  checker: { part: ModelPart; preprocessor: ImageProcessorConfig },
  rgb: Uint8Array,
  floatImage: Float32Array,
  width: number,
  height: number,
): Promise<boolean> {
  const { part, preprocessor } = checker;
  const clip = await preprocessForClip(rgb, width, height, preprocessor);
  const outputs = await part.session.run({
    clip_input: TensorFeeder.forInput(part.session, 'clip_input', [1, 3, clip.size[0], clip.size[1]]).setFloats(clip.data),
    images: TensorFeeder.forInput(part.session, 'images', [1, height, width, 3]).setFloats(floatImage),
  });
  const verdict = outputs['has_nsfw_concepts'] ?? outputs[part.session.outputNames[1]!];
  if (!verdict) throw new Error('safety checker returned no has_nsfw_concepts output');
  // ORT JS returns bool tensors as a Uint8Array of 0/1.
  const value: unknown = (verdict as ort.Tensor).data[0];
  return value === true || value === 1 || value === 1n;
}
