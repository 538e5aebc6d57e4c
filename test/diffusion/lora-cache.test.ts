/**
 * The LoRA session cache under overlapping generations (continuous batching runs several `generate` calls at once):
 * a set evicted while a generation still runs on it keeps its sessions until that generation is done, and is released
 * then. Real merges of the tiny kohya fixture into the tiny model, real ORT sessions (a released session refuses to run).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { LoraLibrary } from '../../src/diffusion/lora/library.js';
import { LoraSessionCache, type ResolvedLora } from '../../src/diffusion/lora/sessions.js';
import type { ModelPart } from '../../src/diffusion/model.js';
import { FIXTURES, tinyPipelineForSuite } from '../helpers/reference.js';

/** Runs the text encoder part once: a released session throws. */
async function runs(part: ModelPart): Promise<boolean> {
  try {
    await part.session.run({ input_ids: new ort.Tensor('int32', new Int32Array(77).fill(49407), [1, 77]) });
    return true;
  } catch {
    return false;
  }
}

describe('LoRA session cache leases', () => {
  const pipeline = tinyPipelineForSuite();

  test('a set evicted while in use is released by its last user, not under it', async () => {
    const library = new LoraLibrary(join(FIXTURES, 'loras'));
    const file = await library.resolve('tiny-kohya');
    const hash = await library.hash(file.file);
    const set = (multiplier: number): ResolvedLora[] => [{ name: 'tiny-kohya', file: file.file, hash, teMultiplier: multiplier, unetMultiplier: multiplier }];
    const cache = new LoraSessionCache((part, rewrite) => pipeline().model.openPartWith(part, rewrite), 1);
    try {
      const first = await cache.acquire(set(1));
      assert.ok(first.parts.textEncoder, 'the kohya fixture changes the text encoder');
      const second = await cache.acquire(set(0.5)); // capacity 1: evicts the first set, which is still in use
      assert.equal(await runs(first.parts.textEncoder!), true, 'the evicted set still runs for its user');
      await first.done();
      assert.equal(await runs(first.parts.textEncoder!), false, 'released once its last user is done');
      assert.equal(await runs(second.parts.textEncoder!), true);
      await second.done();
      assert.equal(await runs(second.parts.textEncoder!), true, 'a set still cached stays open after its user is done');
    } finally {
      await cache.release();
    }
  });
});
