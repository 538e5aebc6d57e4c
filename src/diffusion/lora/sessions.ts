/**
 * Text-encoder and UNet sessions with a set of LoRAs merged in, kept for the last few sets used (LRU,
 * `model.loraCacheSize`). A set is identified by its files' hashes and multipliers, so replacing a file under the same
 * name is a new set. Each entry holds its own copy of the merged parts' weights (on the GPU too): the cache size
 * bounds that memory. A part no LoRA of the set changes (all its multipliers 0, or no module for it) is the base
 * model's own session.
 */
import type { ModelPart } from '../model.js';
import type { ModelRewrite } from '../providers.js';
import { loraModules, type LoraTarget } from './keys.js';
import { mergeLoras, type LoraToMerge } from './merge.js';
import { readSafetensors } from './safetensors.js';

/** One LoRA of a request, resolved to its file. */
export interface ResolvedLora {
  /** As written in the prompt. */
  name: string;
  file: string;
  /** A1111's full hash of the file (library.ts). */
  hash: string;
  teMultiplier: number;
  unetMultiplier: number;
}

export interface LoraParts {
  /** null: the base model's part. */
  textEncoder: ModelPart | null;
  unet: ModelPart | null;
}

/** Opens the model's part with a rewrite of its bytes (StableDiffusionModel.openPartWith). */
export type OpenPartWith = (part: LoraTarget, rewrite: ModelRewrite) => Promise<ModelPart>;

export const DEFAULT_LORA_CACHE_SIZE = 2;

/** The cache key of a set: hashes and multipliers, in a stable order. */
export function loraSetKey(set: readonly ResolvedLora[]): string {
  return set
    .map((lora) => `${lora.hash}:${lora.teMultiplier}:${lora.unetMultiplier}`)
    .sort()
    .join('|');
}

export class LoraSessionCache {
  private readonly entries = new Map<string, Promise<LoraParts>>();
  /** Generations running on an entry now (acquire … done). */
  private readonly users = new Map<Promise<LoraParts>, number>();
  /** Entries evicted while in use: released by their last user. */
  private readonly retired = new Set<Promise<LoraParts>>();

  constructor(
    private readonly openPartWith: OpenPartWith,
    readonly capacity: number = DEFAULT_LORA_CACHE_SIZE,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** Whether the parts of this set are open (or opening) already. */
  has(set: readonly ResolvedLora[]): boolean {
    return this.entries.has(loraSetKey(set));
  }

  /** The parts for a set (empty set: both null), merging and opening them when the set is not cached. */
  async partsFor(set: readonly ResolvedLora[]): Promise<LoraParts> {
    if (set.length === 0) return { textEncoder: null, unet: null };
    return this.entryFor(set);
  }

  /**
   * The parts for a set, held until `done()`: generations may overlap (continuous batching), so a set evicted while
   * another generation still runs on it is released only when its last user is done.
   */
  async acquire(set: readonly ResolvedLora[]): Promise<{ parts: LoraParts; done: () => Promise<void> }> {
    if (set.length === 0) return { parts: { textEncoder: null, unet: null }, done: async () => {} };
    const { entry } = await this.entryOf(set, true);
    let released = false;
    const done = async () => {
      if (released) return;
      released = true;
      const left = (this.users.get(entry) ?? 1) - 1;
      if (left > 0) return void this.users.set(entry, left);
      this.users.delete(entry);
      if (this.retired.delete(entry)) await releaseParts(await entry.catch(() => null));
    };
    try {
      return { parts: await entry, done };
    } catch (error) {
      await done();
      throw error;
    }
  }

  private async entryFor(set: readonly ResolvedLora[]): Promise<LoraParts> {
    return (await this.entryOf(set, false)).entry;
  }

  /**
   * The cache entry of a set (most recently used last), evicting the oldest when the cache is full. (Wrapped in an
   * object: an async function would flatten the entry's promise, and `users` counts by that promise.) With `hold`,
   * the caller becomes a user in the same synchronous stretch that finds or creates the entry, so no overlapping
   * call can evict and release it in between.
   */
  private async entryOf(set: readonly ResolvedLora[], hold: boolean): Promise<{ entry: Promise<LoraParts> }> {
    const key = loraSetKey(set);
    const held = (entry: Promise<LoraParts>) => {
      if (hold) this.users.set(entry, (this.users.get(entry) ?? 0) + 1);
      return { entry };
    };
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      return held(entry);
    }
    // At least the set in use is kept: its sessions are released when a later set evicts it (and its users are done).
    while (this.entries.size >= Math.max(1, this.capacity)) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [string, Promise<LoraParts>];
      this.entries.delete(oldestKey);
      if ((this.users.get(oldest) ?? 0) > 0) this.retired.add(oldest);
      else await releaseParts(await oldest.catch(() => null));
    }
    entry = this.open(set);
    this.entries.set(key, entry);
    // A failed merge is not kept: the next request tries again.
    entry.catch(() => this.entries.delete(key));
    return held(entry);
  }

  private async open(set: readonly ResolvedLora[]): Promise<LoraParts> {
    const started = performance.now();
    const loras = await Promise.all(set.map(async (lora) => ({ lora, weights: loraModules(await readSafetensors(lora.file)) })));
    for (const { lora, weights } of loras) {
      if (weights.unrecognizedKeys.length > 0) {
        this.log(`LoRA ${lora.name}: ${weights.unrecognizedKeys.length} key(s) not understood, ignored (e.g. ${weights.unrecognizedKeys.slice(0, 3).join(', ')})`);
      }
    }
    const openPart = async (target: LoraTarget): Promise<ModelPart | null> => {
      const toMerge: LoraToMerge[] = loras.map(({ lora, weights }) => ({
        name: lora.name,
        weights,
        multiplier: target === 'unet' ? lora.unetMultiplier : lora.teMultiplier,
      }));
      const relevant = toMerge.filter((lora) => lora.multiplier !== 0 && lora.weights.modules.some((module) => module.target === target));
      if (relevant.length === 0) return null;
      return this.openPartWith(target, async (bytes, folder) => {
        const result = await mergeLoras(bytes, folder, target, relevant);
        for (const lora of relevant) {
          const missing = result.unmatched.filter((entry) => entry.lora === lora.name);
          if (missing.length > 0) {
            this.log(`LoRA ${lora.name}: ${missing.length} ${target} module(s) not in this model, ignored (e.g. ${missing[0]!.module}: ${missing[0]!.reason})`);
          }
        }
        this.log(`LoRA ${relevant.map((lora) => lora.name).join(', ')}: ${result.mergedModules} ${target} module(s) merged`);
        return result.model;
      });
    };
    const textEncoder = await openPart('text_encoder');
    let unet: ModelPart | null;
    try {
      unet = await openPart('unet');
    } catch (error) {
      await releaseParts({ textEncoder, unet: null });
      throw error;
    }
    this.log(`LoRA set ${set.map((lora) => `${lora.name}:${lora.unetMultiplier}`).join(', ')} loaded in ${((performance.now() - started) / 1000).toFixed(1)}s`);
    return { textEncoder, unet };
  }

  async release(): Promise<void> {
    const entries = [...this.entries.values()];
    this.entries.clear();
    for (const entry of entries) await releaseParts(await entry.catch(() => null));
  }
}

async function releaseParts(parts: LoraParts | null): Promise<void> {
  await parts?.textEncoder?.session.release().catch(() => {});
  await parts?.unet?.session.release().catch(() => {});
}
