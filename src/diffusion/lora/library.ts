/**
 * The LoRAs a bot offers: the `.safetensors` files in `model.loraDir` (not its subfolders), named by their file name
 * without the extension, as A1111 names them in `<lora:name>`. Hashes (A1111's, see safetensors.ts `addnetHash`) are
 * computed on first use and kept while the file's size and modification time stay the same.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ImagineError } from '../errors.js';
import { addnetHash } from './safetensors.js';

/** A `<lora:name>` that names no file in the LoRA folder. The message lists what there is. */
export class UnknownLoraError extends ImagineError {
  readonly lora: string;
  constructor(name: string, available: readonly string[], why = 'no LoRAs are installed') {
    const offer =
      available.length === 0
        ? why
        : `available: ${available.slice(0, 25).join(', ')}${available.length > 25 ? `, … (${available.length} in all; see /imagine-loras)` : ''}`;
    super('unknown_lora', `Unknown LoRA "${name}" in <lora:${name}>: ${offer}.`);
    this.name = 'UnknownLoraError';
    this.lora = name;
  }
}

export interface LoraFile {
  name: string;
  file: string;
  bytes: number;
}

export class LoraLibrary {
  private readonly hashes = new Map<string, { size: number; mtimeMs: number; hash: string }>();

  /** `folder` null: no LoRA folder configured (every `<lora:…>` is unknown). */
  constructor(readonly folder: string | null) {}

  /** The LoRA files, sorted by name. A missing folder lists none. */
  async list(): Promise<LoraFile[]> {
    if (this.folder === null) return [];
    let entries: string[];
    try {
      entries = await readdir(this.folder);
    } catch {
      return [];
    }
    const files: LoraFile[] = [];
    for (const entry of entries) {
      if (!entry.toLowerCase().endsWith('.safetensors')) continue;
      const file = join(this.folder, entry);
      const info = await stat(file).catch(() => null);
      if (info?.isFile()) files.push({ name: entry.slice(0, -'.safetensors'.length), file, bytes: info.size });
    }
    return files.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The file for a name (exact match first, then case-insensitive, as file systems differ); UnknownLoraError if none. */
  async resolve(name: string): Promise<LoraFile> {
    const files = await this.list();
    const found = files.find((file) => file.name === name) ?? files.find((file) => file.name.toLowerCase() === name.toLowerCase());
    if (!found) {
      // Say so when the configured folder itself is missing: "no LoRAs are installed" would hide a wrong path.
      const missing = this.folder !== null && files.length === 0 && !(await stat(this.folder).then((info) => info.isDirectory(), () => false));
      throw new UnknownLoraError(name, files.map((file) => file.name), missing ? `the LoRA folder ${this.folder} (model.loraDir) does not exist` : undefined);
    }
    return found;
  }

  /** A1111's full hash of the file (its first 12 hex digits are what `Lora hashes` shows). */
  async hash(file: string): Promise<string> {
    const info = await stat(file);
    const known = this.hashes.get(file);
    if (known && known.size === info.size && known.mtimeMs === info.mtimeMs) return known.hash;
    const hash = addnetHash(new Uint8Array(await readFile(file)));
    this.hashes.set(file, { size: info.size, mtimeMs: info.mtimeMs, hash });
    return hash;
  }
}

/** A1111's short hash, as `Lora hashes` writes it. */
export function shortLoraHash(hash: string): string {
  return hash.slice(0, 12);
}
