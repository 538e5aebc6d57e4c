/**
 * Images a job starts from (img2img): an /imagine attachment checked, downloaded and fitted to an allowed size (a
 * PNG at the job's exact width × height), which the handler stores in the queue's InputImageStore. (Upscale and Vary
 * store a finished image as it is; for Upscale the engine resizes it ×2 with Lanczos.)
 */
import sharp from 'sharp';
import { parseSize } from '../config/index.js';
import { sizeLabel } from '../util/format.js';
import { Refusal } from './interaction.js';

/** What /imagine takes as `image`. */
export const INPUT_CONTENT_TYPES = ['image/png', 'image/jpeg', 'image/webp'] as const;
/** Discord's own upload limit for bots without boosts, and ours for a starting image. */
export const MAX_INPUT_BYTES = 10 * 1024 * 1024;
/** 4096 × 4096: enough for any photo worth starting from, small enough that decoding cannot exhaust memory. */
export const MAX_INPUT_PIXELS = 4096 * 4096;
const DOWNLOAD_TIMEOUT_MS = 15_000;

/** The part of discord.js' Attachment the checks read. */
export interface AttachmentInfo {
  url: string;
  name: string;
  size: number;
  contentType: string | null;
  width: number | null;
  height: number | null;
}

const tooManyPixels = (width: number, height: number) =>
  new Refusal('image_too_many_pixels', `The image is ${width}×${height}; the limit is 16.7 million pixels (4096×4096).`);
const unreadable = () => new Refusal('image_unreadable', 'That attachment could not be read as an image; attach a PNG, JPEG or WebP.');

/** Checks what Discord says of the attachment (type, bytes, pixels) before anything is downloaded. */
export function checkAttachment(attachment: AttachmentInfo): void {
  const type = (attachment.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (!(INPUT_CONTENT_TYPES as readonly string[]).includes(type)) {
    throw new Refusal('image_type', `The attachment is ${type ? `of type ${type}` : 'not an image'}; attach a PNG, JPEG or WebP.`);
  }
  if (attachment.size > MAX_INPUT_BYTES) throw new Refusal('image_too_large', `The image is ${(attachment.size / 1024 / 1024).toFixed(1)} MiB; the limit is 10 MiB.`);
  if (attachment.width && attachment.height && attachment.width * attachment.height > MAX_INPUT_PIXELS) {
    throw tooManyPixels(attachment.width, attachment.height);
  }
}

/** Downloads an attachment, refusing more than MAX_INPUT_BYTES whatever the attachment claimed. */
export async function downloadAttachment(url: string): Promise<Buffer> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
  } catch {
    throw new Refusal('image_download', 'The attachment could not be downloaded from Discord; try again.');
  }
  if (!response.ok) throw new Refusal('image_download', `The attachment could not be downloaded from Discord (HTTP ${response.status}); try again.`);
  const bytes = Buffer.from(await response.arrayBuffer());
  if (bytes.length > MAX_INPUT_BYTES) throw new Refusal('image_too_large', 'The image is larger than 10 MiB.');
  return bytes;
}

/** The decoded image's size, refusing what sharp cannot read or what has too many pixels. */
export async function imageSize(bytes: Buffer): Promise<{ width: number; height: number }> {
  const metadata = await sharp(bytes).metadata().catch(() => undefined);
  const { width, height, format } = metadata ?? {};
  if (!width || !height || !['png', 'jpeg', 'webp'].includes(format ?? '')) throw unreadable();
  if (width * height > MAX_INPUT_PIXELS) throw tooManyPixels(width, height);
  return { width, height };
}

/**
 * The allowed size nearest the image's shape: the closest aspect ratio first (compared as logarithms, so 2:1 and
 * 1:2 are as far from 1:1), then the pixel count closest to the image's. Undefined when no size parses.
 */
export function nearestAllowedSize(width: number, height: number, sizes: readonly string[]): string | undefined {
  let best: { size: string; aspect: number; area: number } | undefined;
  for (const size of sizes) {
    const dims = parseSize(size);
    if (!dims) continue;
    const aspect = Math.abs(Math.log(dims.width / dims.height) - Math.log(width / height));
    const area = Math.abs(Math.log((dims.width * dims.height) / (width * height)));
    if (!best || aspect < best.aspect - 1e-9 || (Math.abs(aspect - best.aspect) <= 1e-9 && area < best.area)) best = { size, aspect, area };
  }
  return best?.size;
}

/**
 * The image at exactly width × height as a PNG: scaled to cover the size and centre-cropped, so its proportions are
 * kept (nothing is stretched), with EXIF rotation applied and any alpha flattened onto white.
 */
export async function fitImage(bytes: Uint8Array, width: number, height: number): Promise<Buffer> {
  try {
    return await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS })
      .rotate()
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .resize(width, height, { fit: 'cover', position: 'centre', kernel: 'lanczos3' })
      .removeAlpha()
      .png()
      .toBuffer();
  } catch {
    throw unreadable();
  }
}

/** "512x512" for the size list of a refusal. */
export function sizeList(sizes: readonly string[]): string {
  return sizes.map(sizeLabel).join(', ');
}
