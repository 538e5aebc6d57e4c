/**
 * Turns finished images into Discord attachments, applying the guild's policy for images the safety checker flagged
 * in channels not marked NSFW: `spoiler` (Discord hides it until clicked: the SPOILER_ filename prefix), `blur`
 * (a blurred copy is sent instead, still with its parameters), or `withhold` (not sent at all).
 */
import type { RawFile } from 'discord.js';
import sharp from 'sharp';
import type { NsfwPolicy } from '../config/index.js';
import { insertTextChunks, readTextChunks } from '../queue/index.js';

export type { NsfwPolicy };

export interface FinishedImage {
  /** The encoded PNG, with its `parameters` chunk. */
  png: Uint8Array;
  /** The safety checker's verdict, null or undefined when it did not run. */
  nsfw?: boolean | null;
  seed: string;
}

export interface PreparedAttachments {
  files: RawFile[];
  /** Per image, in order: the file sent for it (original, spoilered or blurred), or null when withheld. */
  shown: (RawFile | null)[];
  /** Flagged images sent hidden (spoiler) or blurred. */
  flagged: number;
  /** Flagged images not sent. */
  withheld: number;
}

/** Whether the checker's verdict matters here: not in NSFW channels, unless the guild wants it there too. */
export function policyApplies(channelIsNsfw: boolean, checkInNsfwChannels: boolean): boolean {
  return !channelIsNsfw || checkInNsfwChannels;
}

/** Blurs strongly enough that nothing is recognisable, keeping the original's text chunks (its parameters). */
export async function blurPng(png: Buffer): Promise<Buffer> {
  const image = sharp(png);
  const { width = 512, height = 512 } = await image.metadata();
  const sigma = Math.max(8, Math.round(Math.max(width, height) / 24));
  const blurred = await image.blur(sigma).png({ compressionLevel: 6 }).toBuffer();
  const chunks = readTextChunks(png);
  return Object.keys(chunks).length > 0 ? insertTextChunks(blurred, chunks) : blurred;
}

export async function prepareAttachments(
  images: readonly FinishedImage[],
  options: { policy: NsfwPolicy; applies: boolean; jobId: string },
): Promise<PreparedAttachments> {
  const shown: (RawFile | null)[] = [];
  let flagged = 0;
  let withheld = 0;
  for (const [index, image] of images.entries()) {
    const name = resultFileName(options.jobId, index + 1);
    const isFlagged = options.applies && image.nsfw === true;
    const png = Buffer.from(image.png.buffer, image.png.byteOffset, image.png.byteLength);
    if (!isFlagged) {
      shown.push({ name, data: png, contentType: 'image/png' });
      continue;
    }
    switch (options.policy) {
      case 'withhold':
        withheld++;
        shown.push(null);
        break;
      case 'blur':
        flagged++;
        shown.push({ name: `SPOILER_${name}`, data: await blurPng(png), contentType: 'image/png' });
        break;
      case 'spoiler':
        flagged++;
        shown.push({ name: `SPOILER_${name}`, data: png, contentType: 'image/png' });
        break;
    }
  }
  return { files: shown.filter((file): file is RawFile => file !== null), shown, flagged, withheld };
}

/** The attachment name of a job's image (1-based); a button falls back to it when the result file is gone. */
export function resultFileName(jobId: string, image: number): string {
  return `imagine-${jobId}-${image}.png`;
}

/** Columns × rows of the grid for n images: 1×2 for two, 2×2 for three (one cell blank) and four. */
export function gridLayout(count: number): { columns: number; rows: number } {
  if (count <= 1) return { columns: 1, rows: 1 };
  if (count === 2) return { columns: 2, rows: 1 };
  return { columns: 2, rows: Math.ceil(count / 2) };
}

/**
 * One picture of a job's images side by side, cell i = image i (so "U2" is the second cell, left to right, top to
 * bottom); a withheld image leaves its cell blank. It is a WebP (quality 90), not a PNG: it carries no parameters,
 * and the originals beside it stay the job's only PNGs, each with its own `parameters` chunk. Spoilered when any
 * cell shows a flagged image.
 */
export async function gridAttachment(prepared: PreparedAttachments, options: { jobId: string; width: number; height: number }): Promise<RawFile | undefined> {
  const count = prepared.shown.length;
  if (count < 2) return undefined;
  const { width, height } = options;
  const { columns, rows } = gridLayout(count);
  const cells: Array<{ input: Buffer; left: number; top: number }> = [];
  for (const [index, file] of prepared.shown.entries()) {
    if (!file) continue;
    // Resized to the cell in case an image came back in another size than the job asked.
    const input = await sharp(file.data as Buffer).resize(width, height, { fit: 'fill' }).toBuffer();
    cells.push({ input, left: (index % columns) * width, top: Math.floor(index / columns) * height });
  }
  const data = await sharp({ create: { width: width * columns, height: height * rows, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite(cells)
    .webp({ quality: 90 })
    .toBuffer();
  const spoiler = prepared.flagged > 0;
  return { name: `${spoiler ? 'SPOILER_' : ''}imagine-${options.jobId}-grid.webp`, data, contentType: 'image/webp' };
}
