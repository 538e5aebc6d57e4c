/**
 * `generate` with `<lora:…>` (a1111 syntax) on the tiny model and test/fixtures/loras: multiplier 0 gives the PNG of
 * no LoRA, 1 another one; the parameters chunk keeps the tag in the prompt and has A1111's `Lora hashes` (the hash
 * computed by scripts/make-lora-fixtures.py); an unknown name is a one-line error listing the LoRAs there are.
 * PNGs are compared without their text chunks (the prompt as typed differs by design).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readTextChunks } from '../../src/diffusion/png.js';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { TINY_MODEL } from '../helpers/reference.js';

const LORAS = join(TINY_MODEL, '..', 'loras');
const hashes = (JSON.parse(readFileSync(join(LORAS, 'expected.json'), 'utf8')) as { hashes: Record<string, string> }).hashes;

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'imagine-lora-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

let runs = 0;
async function generate(prompt: string) {
  const out = join(work, String(runs++));
  const result = await runCli([
    'generate', '--model', TINY_MODEL, '--prompt', prompt, '--prompt-syntax', 'a1111', '--lora-dir', LORAS, '--seed', '42',
    '--steps', '3', '--cfg', '7', '--width', '64', '--height', '64', '--scheduler', 'euler', '--provider', 'cpu', '--out', out,
  ]);
  return { ...result, png: result.code === 0 ? await readFile(join(out, '0.png')) : null };
}

describe('imagine-bot generate with <lora:…>', () => {
  test('<lora:x:0> is the PNG of no LoRA, <lora:x:1> differs; the infotext keeps the tag and has Lora hashes', async () => {
    const none = await generate('a photo of a cat');
    const zero = await generate('a photo of a cat <lora:tiny-kohya:0>');
    const one = await generate('a photo of a cat <lora:tiny-kohya:1>');
    for (const run of [none, zero, one]) assert.equal(run.code, 0, run.stderr);
    assert.ok(pngWithoutTextChunks(zero.png!).equals(pngWithoutTextChunks(none.png!)), 'multiplier 0: same header and pixels');
    assert.ok(!pngWithoutTextChunks(one.png!).equals(pngWithoutTextChunks(none.png!)), 'multiplier 1: different pixels');
    const parameters = readTextChunks(one.png!).parameters ?? '';
    assert.match(parameters, /^a photo of a cat <lora:tiny-kohya:1>\n/, 'the prompt as typed, tag included');
    assert.ok(parameters.includes(`Lora hashes: "tiny-kohya: ${hashes['tiny-kohya']}"`), parameters);
    assert.doesNotMatch(readTextChunks(none.png!).parameters ?? '', /Lora hashes/);
    // The tag is not counted as prompt tokens.
    assert.match(one.stderr, /^prompt: 5\/75 tokens$/m);
  });

  test('an unknown LoRA is a one-line error that lists the available ones', async () => {
    const result = await generate('a cat <lora:missing:1>');
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^error: Unknown LoRA "missing" in <lora:missing>: available: tiny-kohya, tiny-peft\.$/m);
  });
});
