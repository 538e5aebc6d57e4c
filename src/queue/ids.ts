import { randomBytes } from 'node:crypto';
import { MAX_SEED } from '../diffusion/rng/types.js';

/** 9 random bytes → 12 base64url characters (72 bits): short enough for custom_ids, collisions negligible. */
export function newJobId(): string {
  return randomBytes(9).toString('base64url');
}

export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{12}$/;

/** A uniformly random seed in 0 … 2^64−1, as the decimal string JobParams keeps. */
export function randomSeed(): string {
  return randomBytes(8).readBigUInt64BE().toString();
}

/** Parses a seed given as a bigint, number or decimal string; undefined when it is not an integer in range. */
export function parseSeed(value: bigint | number | string): bigint | undefined {
  let seed: bigint;
  try {
    if (typeof value === 'bigint') seed = value;
    else if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) return undefined;
      seed = BigInt(value);
    } else {
      if (!/^\d{1,20}$/.test(value.trim())) return undefined;
      seed = BigInt(value.trim());
    }
  } catch {
    return undefined;
  }
  return seed >= 0n && seed <= MAX_SEED ? seed : undefined;
}
