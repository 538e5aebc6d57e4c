import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { join } from 'node:path';
import { chunkCapacity, chunkFragments } from '../../src/diffusion/prompt/chunker.js';
import { tokenizePrompt } from '../../src/diffusion/prompt/index.js';
import { loadClipTokenizer, type ClipTokenizer } from '../../src/diffusion/tokenizer.js';
import { loadA1111PromptTable } from '../helpers/a1111-prompts.js';
import { TINY_MODEL } from '../helpers/reference.js';

const table = loadA1111PromptTable();

describe("A1111's tokenize_line, run on the table of prompts with the model's own tokenizer", () => {
  let tokenizer: ClipTokenizer;
  before(async () => {
    tokenizer = await loadClipTokenizer(join(TINY_MODEL, 'tokenizer'));
  });

  test("the layout comes from the model: 75 tokens per chunk, A1111's BOS, EOS and comma ids", () => {
    assert.equal(tokenizer.maxLength - 2, table.options.chunk_length);
    assert.equal(tokenizer.bosTokenId, table.options.id_start);
    assert.equal(tokenizer.eosTokenId, table.options.id_end);
    assert.equal(tokenizer.tokenId(',</w>'), table.options.comma_token);
  });

  for (const expected of table.tokenize_line) {
    test(expected.name, () => {
      const tokens = tokenizePrompt(tokenizer, expected.prompt, 'a1111');
      assert.equal(tokens.chunks.length, expected.chunks.length, 'chunk count');
      tokens.chunks.forEach((chunk, i) => {
        const want = expected.chunks[i]!;
        assert.deepEqual(Array.from(chunk.ids), want.ids, `chunk ${i} ids`);
        // A1111 hands its multipliers to torch as float32.
        assert.deepEqual(Array.from(chunk.weights), want.weights.map(Math.fround), `chunk ${i} weights`);
      });
      assert.equal(tokens.tokenCount, expected.token_count, 'token count');
      assert.equal(tokens.capacity, expected.target_token_count, 'capacity');
      assert.equal(tokens.droppedTokenCount, 0);
    });
  }
});

test('chunk length, comma backtrack and special ids are parameters (hand-derived from tokenize_line)', () => {
  const ids: Record<string, number> = { a: 1, b: 2, ',': 9, c: 3, d: 4, e: 5 };
  const tokenize = (text: string): number[] => text.split(' ').filter(Boolean).map((word) => ids[word]!);
  const layout = { chunkLength: 4, bosTokenId: 100, eosTokenId: 101, commaTokenId: 9, commaPaddingBacktrack: 2 };
  // a b , c fill the chunk; at d the comma is 4 - 2 = 2 tokens back, within 2, so the chunk ends after it and c moves on.
  const withComma = chunkFragments([{ text: 'a b , c d e', weight: 1 }], tokenize, layout);
  assert.deepEqual(withComma.chunks.map((c) => Array.from(c.ids)), [[100, 1, 2, 9, 101, 101], [100, 3, 4, 5, 101, 101]]);
  assert.equal(withComma.tokenCount, 4 + 3);
  // With the backtrack at 1 the comma is too far back: a plain cut after four tokens.
  const tooFar = chunkFragments([{ text: 'a b , c d e', weight: 2 }], tokenize, { ...layout, commaPaddingBacktrack: 1 });
  assert.deepEqual(tooFar.chunks.map((c) => Array.from(c.ids)), [[100, 1, 2, 9, 3, 101], [100, 4, 5, 101, 101, 101]]);
  assert.deepEqual(Array.from(tooFar.chunks[1]!.weights), [1, 2, 2, 1, 1, 1]);
});

test('capacity is whole chunks, at least one', () => {
  assert.deepEqual([0, 1, 75, 76, 150, 151].map((n) => chunkCapacity(n, 75)), [75, 75, 75, 150, 150, 225]);
});
