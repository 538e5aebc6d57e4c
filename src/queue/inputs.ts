/**
 * Where an img2img job's starting image waits until a worker runs the job. A job's parameters name it by the SHA-256
 * of its PNG (`JobParams.init.ref`), so the job record, the delivery outbox and the BullMQ payload stay small and the
 * same image is stored once however many jobs use it (variations of one image, re-rolls). A Discord CDN URL would not
 * do: its signature expires, and a worker may have no way to reach Discord.
 *
 *  - local backend: files `<dataDir>/inputs/<sha256>.png` (FileInputImageStore);
 *  - Redis backend: keys `<prefix>:input:<sha256>`, base64 like the results, which every worker can read
 *    (RedisInputImageStore).
 *
 * Both keep an image for INPUT_IMAGE_TTL_MS after it was last stored; a job whose image has expired fails with
 * InputImageGoneError. `withInputImages` puts the bytes into the engine's request just before it runs.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RedisClient } from 'bullmq';
import type { Logger } from 'pino';
import { ImagineError } from '../errors.js';
import type { GenerateOptions, GeneratedImages, GenerationRequest, ImageGenerator } from './types.js';

/** A week: longer than any job waits, and re-rolls of an img2img job within it still find their image. */
export const INPUT_IMAGE_TTL_MS = 7 * 24 * 3600 * 1000;

const REF_PATTERN = /^[0-9a-f]{64}$/;

export interface InputImageStore {
  /** Stores a PNG (again: that renews its time to live) and returns its reference. */
  put(png: Uint8Array): Promise<string>;
  /** The PNG, or undefined when it expired or was never stored. */
  get(ref: string): Promise<Uint8Array | undefined>;
}

export class InputImageGoneError extends ImagineError {
  constructor() {
    super('input_image_gone', 'The image this job starts from is no longer stored (they are kept for a week); attach it again.');
    this.name = 'InputImageGoneError';
  }
}

export function inputImageRef(png: Uint8Array): string {
  return createHash('sha256').update(png).digest('hex');
}

/** Files under one folder (`<dataDir>/inputs`); expired ones are removed at most hourly, when an image is stored. */
export class FileInputImageStore implements InputImageStore {
  private lastSweep = 0;

  constructor(
    private readonly dir: string,
    private readonly options: { ttlMs?: number; logger?: Logger } = {},
  ) {}

  private get ttlMs(): number {
    return this.options.ttlMs ?? INPUT_IMAGE_TTL_MS;
  }

  async put(png: Uint8Array): Promise<string> {
    const ref = inputImageRef(png);
    const path = join(this.dir, `${ref}.png`);
    await mkdir(this.dir, { recursive: true });
    const now = new Date();
    try {
      // Already there (same bytes): only its age restarts.
      await utimes(path, now, now);
    } catch {
      // Written whole or not at all, like the results.
      await writeFile(`${path}.tmp`, png);
      await rename(`${path}.tmp`, path);
    }
    if (Date.now() - this.lastSweep > 3600_000) {
      this.lastSweep = Date.now();
      void this.sweep();
    }
    return ref;
  }

  async get(ref: string): Promise<Uint8Array | undefined> {
    if (!REF_PATTERN.test(ref)) return undefined;
    const path = join(this.dir, `${ref}.png`);
    try {
      if (Date.now() - (await stat(path)).mtimeMs > this.ttlMs) return undefined;
      return await readFile(path);
    } catch {
      return undefined;
    }
  }

  /** Removes images stored longer ago than the time to live; returns how many. */
  async sweep(): Promise<number> {
    let removed = 0;
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0;
    }
    const cutoff = Date.now() - this.ttlMs;
    for (const name of names) {
      const path = join(this.dir, name);
      try {
        if ((await stat(path)).mtimeMs < cutoff) {
          await unlink(path);
          removed += 1;
        }
      } catch (error) {
        this.options.logger?.warn({ err: error, file: path }, 'could not remove an old input image');
      }
    }
    if (removed > 0) this.options.logger?.info({ removed, dir: this.dir }, 'old input images removed');
    return removed;
  }
}

/** Keys on the workers' Redis, written with their time to live (the client is the queue's, once connected). */
export class RedisInputImageStore implements InputImageStore {
  constructor(
    private readonly client: () => RedisClient,
    private readonly keyOf: (ref: string) => string,
    private readonly ttlMs: number = INPUT_IMAGE_TTL_MS,
  ) {}

  async put(png: Uint8Array): Promise<string> {
    const ref = inputImageRef(png);
    await this.client().set(this.keyOf(ref), Buffer.from(png.buffer, png.byteOffset, png.byteLength).toString('base64'), { PX: this.ttlMs });
    return ref;
  }

  async get(ref: string): Promise<Uint8Array | undefined> {
    if (!REF_PATTERN.test(ref)) return undefined;
    const base64 = await this.client().get(this.keyOf(ref));
    return base64 === null ? undefined : Buffer.from(base64, 'base64');
  }
}

/**
 * An ImageGenerator that reads an img2img job's starting image from `store` and hands it to `inner` as
 * `request.initImage`; txt2img requests pass through unchanged. A missing image fails the job with a clear sentence.
 */
export function withInputImages(inner: ImageGenerator, store: InputImageStore): ImageGenerator {
  return {
    async generate(request: GenerationRequest, options: GenerateOptions): Promise<GeneratedImages> {
      if (!request.init) return inner.generate(request, options);
      const data = await store.get(request.init.ref);
      if (!data) throw new InputImageGoneError();
      return inner.generate({ ...request, initImage: { data, strength: request.init.strength } }, options);
    },
  };
}
