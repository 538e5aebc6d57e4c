import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { join } from 'node:path';
import { countTokens, encodePromptChunks, formatTokenCount, tokenizePrompt } from '../../src/diffusion/prompt/index.js';
import { loadClipTokenizer, type ClipTokenizer } from '../../src/diffusion/tokenizer.js';
import { loadA1111PromptTable } from '../helpers/a1111-prompts.js';
import { TINY_MODEL } from '../helpers/reference.js';

const table = loadA1111PromptTable();
const caseNamed = (name: string) => table.tokenize_line.find((c) => c.name === name)!;

let tokenizer: ClipTokenizer;
before(async () => {
  tokenizer = await loadClipTokenizer(join(TINY_MODEL, 'tokenizer'));
});

test('a1111: the counter reads tokens used / chunk capacity, as A1111 shows it', () => {
  const realistic = caseNamed('a realistic long prompt');
  const count = countTokens(tokenizer, realistic.prompt, 'a1111');
  assert.equal(formatTokenCount(count), `${realistic.token_count}/${realistic.target_token_count} tokens`);
  assert.equal(formatTokenCount(count), '96/150 tokens');
  assert.equal(formatTokenCount(countTokens(tokenizer, '', 'a1111')), '0/75 tokens');
});

test("plain: diffusers' single 77-token row, and the counter says what truncation dropped", () => {
  const short = tokenizePrompt(tokenizer, 'dog in batman costume', 'plain');
  assert.equal(short.chunks.length, 1);
  assert.deepEqual(short.chunks[0]!.ids, tokenizer.encode('dog in batman costume'));
  assert.equal(formatTokenCount(short), '4/75 tokens');

  // 80 × "dog": diffusers keeps BOS + 75 prompt tokens + EOS, so the last 5 go.
  const long = tokenizePrompt(tokenizer, Array(80).fill('dog').join(' '), 'plain');
  assert.equal(long.chunks.length, 1);
  assert.equal(long.droppedTokenCount, 5);
  assert.equal(formatTokenCount(long), '80/75 tokens; the last 5 tokens were dropped: "dog dog dog dog dog"');
  assert.deepEqual(Array.from(long.chunks[0]!.weights), Array(77).fill(1));
  // Brackets are literal text under plain: no weights, no BREAK.
  assert.deepEqual(Array.from(tokenizePrompt(tokenizer, '(dog:1.5) BREAK cat', 'plain').chunks[0]!.weights), Array(77).fill(1));
});

test("the shorter of prompt and negative prompt is padded with A1111's empty-prompt chunk", () => {
  const empty = caseNamed('empty').chunks[0]!;
  const long = caseNamed('80 tokens, no comma');
  const { prompt, negative } = encodePromptChunks(tokenizer, long.prompt, 'blurry', 'a1111');
  assert.equal(prompt.chunks.length, 2);
  assert.equal(negative.chunks.length, 2);
  assert.deepEqual(Array.from(negative.chunks[1]!.ids), empty.ids);
  assert.deepEqual(Array.from(negative.chunks[1]!.weights), empty.weights);
  // Padding does not change what the counter reports.
  assert.equal(formatTokenCount(negative), '1/75 tokens');

  const swapped = encodePromptChunks(tokenizer, 'a dog', long.prompt, 'a1111');
  assert.equal(swapped.prompt.chunks.length, 2);
  assert.deepEqual(Array.from(swapped.prompt.chunks[1]!.ids), empty.ids);

  const plain = encodePromptChunks(tokenizer, long.prompt, 'blurry', 'plain');
  assert.equal(plain.prompt.chunks.length, 1);
  assert.equal(plain.negative.chunks.length, 1);
});
