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
  const files: RawFile[] = [];
  let flagged = 0;
  let withheld = 0;
  for (const [index, image] of images.entries()) {
    const name = `imagine-${options.jobId}-${index + 1}.png`;
    const isFlagged = options.applies && image.nsfw === true;
    const png = Buffer.from(image.png.buffer, image.png.byteOffset, image.png.byteLength);
    if (!isFlagged) {
      files.push({ name, data: png, contentType: 'image/png' });
      continue;
    }
    switch (options.policy) {
      case 'withhold':
        withheld++;
        break;
      case 'blur':
        flagged++;
        files.push({ name: `SPOILER_${name}`, data: await blurPng(png), contentType: 'image/png' });
        break;
      case 'spoiler':
        flagged++;
        files.push({ name: `SPOILER_${name}`, data: png, contentType: 'image/png' });
        break;
    }
  }
  return { files, flagged, withheld };
}
