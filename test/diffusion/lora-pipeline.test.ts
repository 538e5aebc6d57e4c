/**
 * LoRAs through the pipeline (`<lora:name:w>` in an a1111 prompt) on the tiny model with test/fixtures/loras as the
 * LoRA folder: multiplier 0 is no LoRA, 1 changes the image, the merged sets are cached (LRU of 2), unknown names are
 * a user error listing what there is, and the hashes are A1111's (computed by scripts/make-lora-fixtures.py).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadPipeline } from '../../src/diffusion/load.js';
import { UnknownLoraError } from '../../src/diffusion/lora/library.js';
import type { GenerationRequest, StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { TINY_MODEL } from '../helpers/reference.js';

const LORAS = join(TINY_MODEL, '..', 'loras');
const hashes = (JSON.parse(readFileSync(join(LORAS, 'expected.json'), 'utf8')) as { hashes: Record<string, string> }).hashes;

let pipeline: StableDiffusionPipeline;
const lines: string[] = [];
before(async () => {
  pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false, loraDir: LORAS, loraCacheSize: 2, log: (line) => lines.push(line) });
});
after(async () => {
  await pipeline.release();
  await pipeline.model.release();
});

const request = (prompt: string, extra: Partial<GenerationRequest> = {}): GenerationRequest => ({
  prompt,
  negativePrompt: 'blurry',
  seed: 7n,
  steps: 2,
  cfg: 7,
  width: 64,
  height: 64,
  scheduler: 'euler',
  promptSyntax: 'a1111',
  ...extra,
});

async function run(prompt: string, extra: Partial<GenerationRequest> = {}) {
  const loads: string[][] = [];
  const result = await pipeline.generate(request(prompt, extra), { onLoraLoad: (names) => loads.push([...names]) });
  return { rgb: Buffer.from(result.images[0]!.rgb), result, loads };
}

test('<lora:x:0> is the image without LoRA; <lora:x:1> differs; both name the LoRA with its A1111 hash', async () => {
  const plain = await run('a red house');
  const zero = await run('a red house <lora:tiny-kohya:0>');
  const one = await run('a red house <lora:tiny-kohya:1>');
  assert.ok(zero.rgb.equals(plain.rgb), 'multiplier 0 changes nothing');
  assert.deepEqual(zero.loads, [], 'nothing merged for multiplier 0');
  assert.ok(!one.rgb.equals(plain.rgb), 'multiplier 1 changes the image');
  assert.deepEqual(plain.result.loras, []);
  for (const { result } of [zero, one]) {
    assert.equal(result.loras.length, 1);
    assert.equal(result.loras[0]!.name, 'tiny-kohya');
    assert.equal(result.loras[0]!.hash.slice(0, 12), hashes['tiny-kohya']);
  }
  // The tag is not text: the token count is the prompt's without it.
  assert.equal(one.result.promptTokens.tokenCount, plain.result.promptTokens.tokenCount);
});

test('merged sets are kept (LRU of 2): the same set again is not merged again; a third set evicts the oldest', async () => {
  const first = await run('a dog <lora:tiny-peft:0.5>');
  assert.deepEqual(first.loads, [['tiny-peft']]);
  const again = await run('a dog <lora:tiny-peft:0.5>');
  assert.deepEqual(again.loads, [], 'cached');
  assert.ok(again.rgb.equals(first.rgb), 'the cached sessions give the same image');
  // Unet-only multiplier: a different set.
  const unetOnly = await run('a dog <lora:tiny-peft:0:0.5>');
  assert.deepEqual(unetOnly.loads, [['tiny-peft']]);
  assert.ok(!unetOnly.rgb.equals(first.rgb), 'without the text-encoder part the image differs');
  const both = await run('a dog <lora:tiny-kohya:0.7> <lora:tiny-peft:0.5>');
  assert.deepEqual(both.loads, [['tiny-kohya', 'tiny-peft']]);
  const evicted = await run('a dog <lora:tiny-peft:0.5>');
  assert.deepEqual(evicted.loads, [['tiny-peft']], 'the oldest set was evicted and is merged again');
  assert.ok(evicted.rgb.equals(first.rgb), 'and gives the same image');
  assert.ok(lines.some((line) => /LoRA tiny-kohya: 1 unet module\(s\) not in this model, ignored/.test(line)), 'the unmatched module is logged');
});

test('an unknown LoRA is a user error listing the available ones', async () => {
  await assert.rejects(
    pipeline.generate(request('a cat <lora:nope:1>')),
    (error: unknown) => error instanceof UnknownLoraError && /Unknown LoRA "nope".*available: tiny-kohya, tiny-peft/.test(error.message),
  );
});

test('tags are read from the prompt only (the negative prompt keeps them as text) and only under a1111', async () => {
  const negative = await run('a cat', { negativePrompt: 'blurry <lora:tiny-kohya:1>' });
  assert.deepEqual(negative.loads, []);
  assert.deepEqual(negative.result.loras, []);
  const plainSyntax = await run('a cat <lora:nope:1>', { promptSyntax: 'plain' });
  assert.deepEqual(plainSyntax.result.loras, [], 'plain takes the tag as text');
});
