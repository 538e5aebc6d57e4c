/**
 * The UNet's text conditioning under `a1111` (text-conditioning.ts), on the tiny model: both guidance halves have the
 * prompt's chunk count, the negative prompt padded with the encoding of the empty prompt, each row repeated per image.
 * Expected rows come from the text-encoder session run on diffusers' own token ids (tokenizer.encode) one prompt at
 * a time, not from the chunker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPipeline } from '../../src/diffusion/load.js';
import { textEncoderRunner } from '../../src/diffusion/text-conditioning.js';
import { fractionWithin, TINY_MODEL, tinyPipelineForSuite } from '../helpers/reference.js';

const pipeline = tinyPipelineForSuite();

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

test('a1111 with guidance: a 2-chunk prompt and a short negative padded with the empty prompt, [neg × n, prompt × n]', async () => {
  const { tokenizer } = pipeline().model;
  // SD 1.5 pads with EOS, so diffusers' ids for a prompt of at most 75 tokens are A1111's chunk for it.
  assert.equal(tokenizer.padTokenId, tokenizer.eosTokenId);
  const words = Array.from({ length: 100 }, (_, i) => ['red', 'dog', 'blue', 'cat'][i % 4]!);
  const encodeAlone = async (text: string) => (await textEncoderRunner(pipeline().model.textEncoder)(tokenizer.encode(text), 1)).hidden;
  const expectedPrompt = [await encodeAlone(words.slice(0, 75).join(' ')), await encodeAlone(words.slice(75).join(' '))];
  const expectedNegative = [await encodeAlone('blurry'), await encodeAlone('')];

  const text = await pipeline().encodeText(words.join(' '), 'blurry', 2, true, 'a1111');
  assert.deepEqual(text.dims, [4, 154, 32]);
  assert.deepEqual(text.promptTokens, { tokenCount: 100, capacity: 150, droppedTokenCount: 0, droppedText: '' });
  const chunkSize = 77 * 32;
  const chunkOf = (row: number, chunk: number) => text.embeddings.subarray((row * 2 + chunk) * chunkSize, (row * 2 + chunk + 1) * chunkSize);
  for (const row of [0, 1]) for (const chunk of [0, 1]) assert.ok(maxAbsDiff(chunkOf(row, chunk), expectedNegative[chunk]!) < 1e-5, `negative row ${row} chunk ${chunk}`);
  for (const row of [2, 3]) for (const chunk of [0, 1]) assert.ok(maxAbsDiff(chunkOf(row, chunk), expectedPrompt[chunk]!) < 1e-5, `prompt row ${row} chunk ${chunk}`);
});

test('a1111 without guidance: the prompt alone, not padded for a long negative prompt', async () => {
  const longNegative = Array(100).fill('blurry').join(' ');
  const text = await pipeline().encodeText('a cat', longNegative, 1, false, 'a1111');
  assert.deepEqual(text.dims, [1, 77, 32]);
});

test('plain: one 77-token row per prompt whatever the length, and the count says what was dropped', async () => {
  const text = await pipeline().encodeText(Array(100).fill('dog').join(' '), '', 1, true, 'plain');
  assert.deepEqual(text.dims, [2, 77, 32]);
  assert.equal(text.promptTokens.droppedTokenCount, 25);
  assert.equal(text.promptTokens.droppedText, Array(25).fill('dog').join(' '));
});

test('pinned UNet shapes follow the prompt length: 77 × chunks, re-pinned when it changes, the images as unpinned', async () => {
  const lines: string[] = [];
  const pinned = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false, pinUnetShapes: true, log: (line) => lines.push(line) });
  try {
    const long = Array.from({ length: 100 }, (_, i) => ['red', 'dog', 'blue', 'cat'][i % 4]!).join(' ');
    const request = { seed: 3n, steps: 2, cfg: 7, width: 64, height: 64, scheduler: 'euler', promptSyntax: 'a1111' } as const;
    for (const prompt of [long, 'a cat']) {
      const a = await pinned.generate({ ...request, prompt });
      const b = await pipeline().generate({ ...request, prompt });
      // The pinned UNet runs with its shape arithmetic folded (pin-shapes.ts), which may move a pixel by one level.
      assert.ok(fractionWithin(a.images[0]!.rgb, b.images[0]!.rgb, 1) >= 0.999, prompt.slice(0, 20));
    }
    const pins = lines.filter((line) => line.startsWith('UNet reopened'));
    assert.equal(pins.length, 2, lines.join('\n'));
    assert.match(pins[0]!, /encoder_hidden_states \[2, 154, 32\]/);
    assert.match(pins[1]!, /encoder_hidden_states \[2, 77, 32\]/);
  } finally {
    await pinned.release();
    await pinned.model.release();
  }
});
