import { randomBytes } from 'node:crypto';

/** 9 random bytes → 12 base64url characters (72 bits): short enough for custom_ids, collisions negligible. */
export function newJobId(): string {
  return randomBytes(9).toString('base64url');
}

export const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{12}$/;
