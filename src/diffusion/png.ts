import sharp from 'sharp';
import { imageCountOf, imageSeedOf, type GenerationRequest, type InitImage } from './request.js';

/**
 * PNG output with an A1111-style `parameters` text chunk, the field that A1111's and ComfyUI's "PNG info" read.
 * sharp cannot write PNG text chunks, so we insert one ourselves before IEND, with its CRC.
 */

export interface InfotextFields {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  sampler: string;
  cfg: number;
  seed: bigint | string;
  width: number;
  height: number;
  model: string;
  /** Extra `Key: value` pairs appended after the standard ones (e.g. RNG, batch position). */
  extra?: Record<string, string | number>;
}

/** A1111's infotext: prompt line(s), `Negative prompt: …`, then one line of comma-separated `Key: value` pairs. */
export function formatInfotext(fields: InfotextFields): string {
  const pairs: [string, string | number][] = [
    ['Steps', fields.steps],
    ['Sampler', fields.sampler],
    ['CFG scale', formatNumber(fields.cfg)],
    ['Seed', fields.seed.toString()],
    ['Size', `${fields.width}x${fields.height}`],
    ['Model', fields.model],
    ...Object.entries(fields.extra ?? {}),
  ];
  const settings = pairs.map(([key, value]) => `${key}: ${quoteIfNeeded(String(value))}`).join(', ');
  const lines = [fields.prompt];
  if (fields.negativePrompt) lines.push(`Negative prompt: ${fields.negativePrompt}`);
  lines.push(settings);
  return lines.join('\n');
}

/** A1111 writes `Clip skip: N` only when N > 1 (processing.py: `None if clip_skip <= 1`). */
export function clipSkipInfotext(clipSkip: number | undefined): Record<string, number> {
  return clipSkip !== undefined && clipSkip > 1 ? { 'Clip skip': clipSkip } : {};
}

/** A1111's `Denoising strength: X` on an img2img image (its init image's strength); nothing for text-to-image. */
export function denoisingStrengthInfotext(initImage: Pick<InitImage, 'strength'> | undefined): Record<string, string> {
  return initImage === undefined ? {} : { 'Denoising strength': formatNumber(initImage.strength) };
}

/**
 * A1111's `TI hashes` field: `name: hash` for each textual-inversion embedding used (its file's sha256, first 12 hex
 * digits), joined by ", ", names without `:` and `,` (modules/sd_hijack_clip.py `forward`). A1111 writes the prompt's
 * embeddings, then the negative prompt's, and nothing when none was used; one used in both is written once here.
 */
export function tiHashesInfotext(used: readonly { name: string; hash: string }[] | undefined): Record<string, string> {
  if (!used || used.length === 0) return {};
  return { 'TI hashes': used.map(({ name, hash }) => `${name.replaceAll(':', '').replaceAll(',', '')}: ${hash}`).join(', ') };
}

/**
 * A1111's `Lora hashes: "name: 0123456789ab, other: …"` (extensions-builtin/Lora/extra_networks_lora.py: the name as
 * written in the prompt without `:` and `,`, then the file's short hash); nothing without LoRAs.
 */
export function loraHashesInfotext(loras: readonly { name: string; hash: string }[] | undefined): Record<string, string> {
  if (!loras || loras.length === 0) return {};
  return { 'Lora hashes': loras.map((lora) => `${lora.name.replace(/[:,]/g, '')}: ${lora.hash.slice(0, 12)}`).join(', ') };
}

/**
 * The infotext of one image of a generation, as `imagine-bot generate` writes it: A1111's fields from the request,
 * the sampler that ran (`GenerationResult.sampler`), the model's name, the RNG (A1111's `CPU` or `NV`) and, for a
 * batch, the image's position in it.
 */
export function generationInfotext(
  request: GenerationRequest,
  sampler: string,
  image: { index: number; width: number; height: number },
  model: string,
  textualInversions: readonly { name: string; hash: string }[] = [],
  loras?: readonly { name: string; hash: string }[],
): string {
  const batch = imageCountOf(request);
  // With a seed per image, each image is its seed's image alone: no batch position to give.
  const sharesGenerator = typeof request.seed === 'bigint' && batch > 1;
  return formatInfotext({
    prompt: request.prompt,
    negativePrompt: request.negativePrompt,
    steps: request.steps,
    sampler,
    cfg: request.cfg,
    seed: imageSeedOf(request, image.index),
    width: image.width,
    height: image.height,
    model,
    extra: {
      RNG: (request.rng ?? 'cpu') === 'cpu' ? 'CPU' : 'NV',
      ...(sharesGenerator ? { 'Batch size': batch, 'Batch pos': image.index } : {}),
      ...clipSkipInfotext(request.clipSkip),
      ...denoisingStrengthInfotext(request.initImage),
      // A1111's order: its extra networks (Lora hashes) activate before the prompt is encoded (TI hashes).
      ...loraHashesInfotext(loras),
      ...tiHashesInfotext(textualInversions),
    },
  });
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(4)));
}

/** A1111 quotes values that contain its separators so its parser can split the line back. */
function quoteIfNeeded(value: string): string {
  return /[,:\n"]/.test(value) ? JSON.stringify(value) : value;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 as PNG (and zlib) define it. */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out, 4, 8 + data.length), 8 + data.length);
  return out;
}

/**
 * A text chunk as PIL writes one for `PngInfo.add_text`: tEXt when the text is Latin-1, otherwise an
 * uncompressed iTXt (UTF-8), so prompts in any script survive.
 */
export function textChunk(keyword: string, text: string): Buffer {
  const isLatin1 = /^[\u0000-\u00ff]*$/.test(text);
  if (isLatin1) return chunk('tEXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
  // keyword \0, compression flag 0, method 0, empty language tag \0, empty translated keyword \0, UTF-8 text.
  return chunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Inserts text chunks just before IEND of an existing PNG. */
export function insertTextChunks(png: Buffer, entries: Record<string, string>): Buffer {
  if (png.length < 20 || !png.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG');
  const iendOffset = png.length - 12;
  if (png.toString('latin1', iendOffset + 4, iendOffset + 8) !== 'IEND') throw new Error('PNG does not end with IEND');
  const chunks = Object.entries(entries).map(([key, value]) => textChunk(key, value));
  return Buffer.concat([png.subarray(0, iendOffset), ...chunks, png.subarray(iendOffset)]);
}

/** Reads tEXt/iTXt chunks back (used by tests and by the bot to show a PNG's parameters). */
export function readTextChunks(png: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let offset = 8;
  while (offset + 12 <= png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'tEXt') {
      const zero = data.indexOf(0);
      result[data.toString('latin1', 0, zero)] = data.toString('latin1', zero + 1);
    } else if (type === 'iTXt') {
      const zero = data.indexOf(0);
      const keyword = data.toString('latin1', 0, zero);
      // skip compression flag, method, then language tag and translated keyword (both \0-terminated)
      let cursor = zero + 3;
      cursor = data.indexOf(0, cursor) + 1;
      cursor = data.indexOf(0, cursor) + 1;
      result[keyword] = data.toString('utf8', cursor);
    }
    if (type === 'IEND') break;
    offset += 12 + length;
  }
  return result;
}

/** Encodes 8-bit RGB (HWC) as PNG, with a `parameters` chunk when infotext is given. */
export async function encodePng(rgb: Uint8Array, width: number, height: number, infotext?: string): Promise<Buffer> {
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 6 }).toBuffer();
  return infotext === undefined ? png : insertTextChunks(png, { parameters: infotext });
}
