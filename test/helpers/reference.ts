import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../../src/util/project.js';

export const FIXTURES = join(PROJECT_ROOT, 'test/fixtures');
export const TINY_MODEL = join(FIXTURES, 'tiny-sd');
export const REFERENCE = join(FIXTURES, 'reference');

/** One of diffusers' reference runs (test/fixtures/reference/cases/<id>/case.json). */
export interface ReferenceCase {
  id: string;
  prompt: string;
  negative: string;
  seed: number;
  steps: number;
  cfg: number;
  height: number;
  width: number;
  /** Our scheduler id in the reference's naming (e.g. dpmpp_2m_karras). */
  scheduler: string;
  rng: 'cpu' | 'cuda';
  n: number;
  scheduler_overrides: Record<string, unknown>;
  input_ids: number[][] | number[];
  negative_input_ids: number[][] | number[];
  timesteps: number[];
  latent_shape: [number, number, number, number];
  image_shape: [number, number, number, number];
  nsfw: boolean[];
  clip_input_mean: number;
}

export function caseIds(): string[] {
  return readdirSync(join(REFERENCE, 'cases')).sort();
}

export function loadCase(id: string): ReferenceCase {
  return JSON.parse(readFileSync(join(REFERENCE, 'cases', id, 'case.json'), 'utf8')) as ReferenceCase;
}

/** Raw little-endian float32 data, as the reference .f32 files are written. */
export function readF32(id: string, name: string): Float32Array {
  const bytes = readFileSync(join(REFERENCE, 'cases', id, name));
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/** Decoded 8-bit RGB of a reference PNG. */
export async function readReferencePng(id: string, index: number): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(join(REFERENCE, 'cases', id, `image_${index}.png`)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { rgb: new Uint8Array(data), width: info.width, height: info.height };
}

export function maxAbs(values: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]!));
  return max;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Fraction of 8-bit values within ±tolerance of the reference. */
export function fractionWithin(actual: Uint8Array, expected: Uint8Array, tolerance: number): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let ok = 0;
  for (let i = 0; i < actual.length; i++) if (Math.abs(actual[i]! - expected[i]!) <= tolerance) ok++;
  return ok / actual.length;
}
