import { randomBytes } from 'node:crypto';
import { mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Reads a text file, or undefined when it does not exist or cannot be read. */
export async function readTextIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Makes sure `dir` is a folder this process can write to: creates it (with its parents) when missing, then writes and
 * removes a probe file, since permission bits alone do not tell (root, read-only mounts, ACLs). Throws the file
 * system's error (EEXIST or ENOTDIR for a file in the way, EACCES, EROFS, …) when it is not.
 */
export function ensureWritableFolder(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const probe = join(dir, `.imagine-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  writeFileSync(probe, '');
  unlinkSync(probe);
}
