/**
 * Reading `.safetensors` files (the format every current LoRA ships in): an 8-byte little-endian header length, a
 * JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__: {…}}`, then the tensors' bytes,
 * offsets counted from the end of the header. LoRA files are small (a few to a few hundred MB), so the whole file is
 * read at once; tensors are converted to float32 (F32, F16 and BF16 are what LoRA trainers write).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { toFloat32 } from '../fp16.js';

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export interface SafetensorsTensor {
  dtype: string;
  shape: number[];
  /** The values as float32 (converted from F16 / BF16). */
  values(): Float32Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The byte offset where a safetensors file's tensor data starts (8 + header length). */
export function safetensorsDataStart(bytes: Uint8Array): number {
  if (bytes.length < 8) throw new SafetensorsError('file is shorter than a safetensors header');
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (8 + headerLength > bytes.length) throw new SafetensorsError('safetensors header is longer than the file');
  return 8 + headerLength;
}

export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const dataStart = safetensorsDataStart(bytes);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, dataStart))) as Record<string, unknown>;
  } catch (error) {
    throw new SafetensorsError('safetensors header is not JSON', { cause: error });
  }
  const tensors = new Map<string, SafetensorsTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = (value ?? {}) as Record<string, string>;
      continue;
    }
    const entry = value as HeaderEntry;
    const [begin, end] = entry.data_offsets;
    if (!(begin >= 0 && end >= begin && dataStart + end <= bytes.length)) throw new SafetensorsError(`tensor ${name} lies outside the file`);
    const data = bytes.subarray(dataStart + begin, dataStart + end);
    const count = entry.shape.reduce((product, dim) => product * dim, 1);
    tensors.set(name, { dtype: entry.dtype, shape: entry.shape, values: () => toFloats(data, entry.dtype, count, name) });
  }
  return { tensors, metadata };
}

function toFloats(data: Uint8Array, dtype: string, count: number, name: string): Float32Array {
  // Copy first: the tensor's offset in the file need not be aligned for a typed-array view.
  const aligned = data.slice();
  const bytesPer = dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 0;
  if (bytesPer === 0) throw new SafetensorsError(`tensor ${name} has dtype ${dtype}; LoRA weights must be F32, F16 or BF16`);
  if (aligned.length !== count * bytesPer) throw new SafetensorsError(`tensor ${name}: ${aligned.length} bytes for ${count} ${dtype} values`);
  if (dtype === 'F32') return new Float32Array(aligned.buffer, 0, count);
  const halves = new Uint16Array(aligned.buffer, 0, count);
  if (dtype === 'F16') return toFloat32(halves);
  // bfloat16 is the upper half of a float32.
  const bits = new Uint32Array(count);
  for (let i = 0; i < count; i++) bits[i] = halves[i]! << 16;
  return new Float32Array(bits.buffer);
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  return parseSafetensors(new Uint8Array(await readFile(file)));
}

/**
 * A1111's hash of a LoRA file, as written in `Lora hashes`: `hashes.sha256(filename, "lora/" + name,
 * use_addnet_hash=True)` for .safetensors, i.e. sd-webui-additional-networks' "addnet" hash — sha256 of the bytes after
 * the header (so editing the metadata does not change it) — of which A1111's NetworkOnDisk.set_hash keeps the first 12
 * hex digits (extensions-builtin/Lora/network.py). Returns the full hex digest.
 */
export function addnetHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes.subarray(safetensorsDataStart(bytes))).digest('hex');
}
