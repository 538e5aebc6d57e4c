import type { InferenceSession } from 'onnxruntime-node';
import sharp from 'sharp';
import type { ProviderChoice } from './providers.js';
import type { RgbImage, TaesdDecoder } from './taesd.js';

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
 * Colour-mapped; `LatentPreviewRenderer` decodes through TAESD when one is configured.
 */
export function encodeBatchPreview(latents: Float32Array, shape: readonly [number, number, number, number], options: PreviewOptions = {}): Promise<Buffer> {
  const [count, , height, width] = shape;
  const images = Array.from({ length: count }, (_, index) => ({ rgb: latentsToRgb(latents, shape, index), width, height }));
  return encodeImageGrid(images, options);
}

/** The images (all of one size) side by side in a near-square grid, row-major, encoded at `size` (encodeBatchPreview). */
function encodeImageGrid(images: readonly RgbImage[], options: PreviewOptions): Promise<Buffer> {
  const { width, height } = images[0] ?? { width: 1, height: 1 };
  const columns = Math.ceil(Math.sqrt(images.length));
  const rows = Math.ceil(images.length / columns);
  const gridWidth = columns * width;
  const grid = new Uint8Array(rows * height * gridWidth * 3);
  for (const [index, { rgb }] of images.entries()) {
    const left = (index % columns) * width;
    const top = Math.floor(index / columns) * height;
    for (let y = 0; y < height; y++) grid.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), ((top + y) * gridWidth + left) * 3);
  }
  return encodeRgbPreview(grid, gridWidth, rows * height, options);
}

export interface PreviewRendererOptions {
  /** A TAESD decoder (file or folder, taesd.ts); null or "" = the colour map only. */
  decoderPath?: string | null;
  /**
   * Where the decoder runs (the bot passes `model.provider`): `auto` takes the first of CUDA, WebGPU, the CPU that
   * runs it (providers.ts' resolveProvider, probed with the decoder itself); on the CPU, one intra-op thread.
   * Default cpu.
   */
  provider?: ProviderChoice;
  /** Opens the decoder's session instead of `provider` (tests). */
  createSession?: (file: string) => Promise<InferenceSession>;
  /** Told when the decoder has opened (at the first preview), with its file and the provider it runs on. */
  onOpen?: (file: string, provider: string) => void;
  /** Told once why TAESD is not used (it failed to open, or a decode failed); previews then use the colour map. */
  onFallback?: (reason: string, error: unknown) => void;
}

/**
 * Encodes batch previews through a TAESD decoder when one is configured, else (and from the first failure of the
 * decoder on) through the colour map: a preview is a courtesy, so its decoder's errors never reach a job; they are
 * reported once through `onFallback`. The decoder opens on the first preview, not at start.
 *
 * It runs where the previews are encoded (the bot process) so that the latents, 48× smaller than the picture, stay
 * what crosses from the engine. It is meant for a GPU (not measured there yet); on the CPU (one intra-op thread, so
 * it competes with an engine on the same CPU for one core at most) a decoder of the real size took seconds per 512²
 * preview on the 2-core development VM, so previews come less often there (one is encoded at a time). `npm run
 * bench` prints its cost beside the colour map's.
 */
export class LatentPreviewRenderer {
  private decoder: Promise<TaesdDecoder | null> | null = null;
  private failed: string | null = null;

  constructor(private readonly options: PreviewRendererOptions = {}) {
    if (!options.decoderPath) this.failed = 'no preview decoder configured';
  }

  /** Which preview is being made: TAESD until the decoder fails (or when none is configured, the colour map). */
  get method(): 'taesd' | 'colour map' {
    return this.failed === null ? 'taesd' : 'colour map';
  }

  /** encodeBatchPreview, decoded through TAESD when it works. */
  async encodeBatch(latents: Float32Array, shape: readonly [number, number, number, number], options: PreviewOptions = {}): Promise<Buffer> {
    const decoder = this.failed === null ? await this.openDecoder() : null;
    if (decoder) {
      try {
        return await encodeImageGrid(await decoder.decode(latents, shape), options);
      } catch (error) {
        this.fallBack(`TAESD preview decoding failed (${(error as Error).message}); using the colour map from now on`, error);
      }
    }
    return encodeBatchPreview(latents, shape, options);
  }

  /** Imported on first use: a bot without a preview decoder never loads ONNX Runtime for its previews. */
  private openDecoder(): Promise<TaesdDecoder | null> {
    this.decoder ??= (async () => {
      const [{ TaesdDecoder }, { openSession, resolveProvider }] = await Promise.all([import('./taesd.js'), import('./providers.js')]);
      let provider = 'custom';
      const createSession =
        this.options.createSession ??
        (async (file: string) => {
          const resolved = (await resolveProvider(this.options.provider ?? 'cpu', file, () => {})).provider;
          provider = resolved;
          return openSession(file, resolved, resolved === 'cpu' ? { intraOpNumThreads: 1 } : {});
        });
      const decoder = await TaesdDecoder.open(this.options.decoderPath!, createSession);
      this.options.onOpen?.(decoder.file, provider);
      return decoder;
    })().catch((error: unknown) => {
      this.fallBack(`TAESD preview decoder not used (${(error as Error).message}); previews use the colour map`, error);
      return null;
    });
    return this.decoder;
  }

  private fallBack(reason: string, error: unknown): void {
    if (this.failed !== null) return;
    this.failed = reason;
    this.options.onFallback?.(reason, error);
  }

  async release(): Promise<void> {
    const decoder = await this.decoder;
    this.decoder = null;
    this.failed ??= 'released';
    await decoder?.release();
  }
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
