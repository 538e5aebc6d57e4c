/**
 * `generate --prompt-syntax`: properties of A1111's syntax seen from outside, through the CLI on the tiny model.
 * The PNGs are compared without their text chunks: the `parameters` chunk records the prompt as typed, so
 * "(cat:1.0)" and "cat" differ there by design; everything else (header, pixels) must be the same bytes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readTextChunks } from '../../src/diffusion/png.js';
import { loadClipTokenizer } from '../../src/diffusion/tokenizer.js';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { TINY_MODEL } from '../helpers/reference.js';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'imagine-syntax-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let runs = 0;
/** Runs a short generation (fixed seed, 3 steps, 64×64, cfg 7 so the negative half runs too); returns its PNG. */
async function generate(prompt: string, syntax: 'plain' | 'a1111'): Promise<{ png: Buffer; stderr: string }> {
  const out = join(work, String(runs++));
  const result = await runCli([
    'generate', '--model', TINY_MODEL, '--prompt', prompt, '--prompt-syntax', syntax, '--seed', '42', '--steps', '3',
    '--cfg', '7', '--width', '64', '--height', '64', '--scheduler', 'euler', '--provider', 'cpu', '--out', out,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return { png: await readFile(join(out, '0.png')), stderr: result.stderr };
}

describe('imagine-bot generate --prompt-syntax', () => {
  test('a1111: "(cat:1.0)" gives the same PNG as "cat" (weight 1 is no emphasis), and the count is printed', async () => {
    const plainWord = await generate('a photo of a cat', 'a1111');
    const weighted = await generate('a photo of a (cat:1.0)', 'a1111');
    assert.ok(pngWithoutTextChunks(weighted.png).equals(pngWithoutTextChunks(plainWord.png)), 'same header and pixels');
    assert.match(readTextChunks(weighted.png).parameters ?? '', /^a photo of a \(cat:1\.0\)\n/, 'the prompt as typed');
    // "a photo of a cat" is 5 CLIP tokens (each word is one token of the vocabulary), of one 75-token chunk.
    assert.match(weighted.stderr, /^prompt: 5\/75 tokens$/m);
    // A weight other than 1 does change the image: the comparison above can fail.
    const emphasised = await generate('a photo of a (cat:1.5)', 'a1111');
    assert.ok(!pngWithoutTextChunks(emphasised.png).equals(pngWithoutTextChunks(plainWord.png)), '(cat:1.5) differs');
  });

  test('a1111 keeps a 200-token prompt whole; plain drops everything after token 75 and says what', async () => {
    const tokenizer = await loadClipTokenizer(join(TINY_MODEL, 'tokenizer'));
    const words = ['red', 'dog', 'blue', 'cat', 'green', 'tree', 'small', 'house', 'river', 'sky'];
    const all = Array.from({ length: 200 }, (_, i) => words[i % words.length]!);
    const long = all.join(' ');
    const first75 = all.slice(0, 75).join(' ');
    assert.equal(tokenizer.tokenize(long).length, 200, 'each word is one CLIP token');

    const longA1111 = await generate(long, 'a1111');
    const prefixA1111 = await generate(first75, 'a1111');
    assert.ok(!pngWithoutTextChunks(longA1111.png).equals(pngWithoutTextChunks(prefixA1111.png)), 'tokens 76-200 change the image');
    assert.match(longA1111.stderr, /^prompt: 200\/225 tokens$/m, 'three chunks of 75');
    assert.doesNotMatch(longA1111.stderr, /warning/);

    // The control: under plain the same prompt is cut to its first 75 tokens, as diffusers cuts it.
    const longPlain = await generate(long, 'plain');
    const prefixPlain = await generate(first75, 'plain');
    assert.ok(pngWithoutTextChunks(longPlain.png).equals(pngWithoutTextChunks(prefixPlain.png)), 'plain truncates');
    const dropped = all.slice(75).join(' ');
    assert.ok(longPlain.stderr.includes(`warning: prompt 200/75 tokens; the last 125 tokens were dropped: "${dropped}"`), longPlain.stderr);
  });

  test('an unknown syntax is refused by the option parser', async () => {
    const result = await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'x', '--prompt-syntax', 'novelai', '--out', join(work, 'x')]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /--prompt-syntax.*novelai.*Allowed choices are a1111, plain/);
  });
});
