import sharp from 'sharp';

/**
 * A cheap preview of SD 1.5 latents without the VAE: each pixel's RGB is a fixed linear combination of the 4 latent
 * channels. These are the factors A1111 uses for its "Approximate (cheap)" live preview; they give recognisable
 * colours and shapes for a few microseconds per image instead of a VAE decode per preview.
 */
const LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];

/**
 * RGB (HWC, 8-bit) at latent resolution for image `index` of latents shaped (n, 4, h, w).
 */
export function latentsToRgb(latents: Float32Array, shape: readonly [number, number, number, number], index = 0): Uint8Array {
  const [, channels, height, width] = shape;
  if (channels !== 4) throw new Error(`latent preview expects 4 channels, got ${channels}`);
  const plane = height * width;
  const base = index * channels * plane;
  const rgb = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      let value = 0;
      for (let l = 0; l < 4; l++) value += latents[base + l * plane + p]! * LATENT_RGB_FACTORS[l]![c]!;
      // The map's output is roughly in [-1, 1], like the VAE's.
      const unit = Math.min(1, Math.max(0, (value + 1) / 2));
      rgb[p * 3 + c] = Math.round(unit * 255);
    }
  }
  return rgb;
}

export interface PreviewOptions {
  /** Longest side of the preview in pixels (default 256). */
  size?: number;
  format?: 'webp' | 'jpeg';
  quality?: number;
}

/** Encodes a small upscaled preview image of one image's latents. */
export function encodeLatentPreview(
  latents: Float32Array,
  shape: readonly [number, number, number, number],
  index = 0,
  options: PreviewOptions = {},
): Promise<Buffer> {
  const [, , height, width] = shape;
  return encodeRgbPreview(latentsToRgb(latents, shape, index), width, height, options);
}

/**
 * Encodes one preview of every image in latents shaped (n, 4, h, w): the images side by side in a near-square grid
 * (⌈√n⌉ columns, row-major in batch order), so a job's batch shows as one picture; the longest side is `size`.
 */
export function encodeBatchPreview(latents: Float32Array, shape: readonly [number, number, number, number], options: PreviewOptions = {}): Promise<Buffer> {
  const [count, , height, width] = shape;
  const columns = Math.ceil(Math.sqrt(count));
  const rows = Math.ceil(count / columns);
  const gridWidth = columns * width;
  const grid = new Uint8Array(rows * height * gridWidth * 3);
  for (let index = 0; index < count; index++) {
    const rgb = latentsToRgb(latents, shape, index);
    const left = (index % columns) * width;
    const top = Math.floor(index / columns) * height;
    for (let y = 0; y < height; y++) grid.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), ((top + y) * gridWidth + left) * 3);
  }
  return encodeRgbPreview(grid, gridWidth, rows * height, options);
}

/** Upscales latent-resolution RGB so its longest side is `size` (cubic) and encodes it. */
function encodeRgbPreview(rgb: Uint8Array, width: number, height: number, options: PreviewOptions): Promise<Buffer> {
  const size = options.size ?? 256;
  const scale = size / Math.max(width, height);
  const image = sharp(rgb, { raw: { width, height, channels: 3 } }).resize(
    Math.max(1, Math.round(width * scale)),
    Math.max(1, Math.round(height * scale)),
    { kernel: 'cubic' },
  );
  const quality = options.quality ?? 70;
  return (options.format ?? 'webp') === 'webp' ? image.webp({ quality }).toBuffer() : image.jpeg({ quality }).toBuffer();
}
