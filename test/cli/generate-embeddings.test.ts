/**
 * `generate --embeddings`: a prompt naming a textual-inversion embedding differs from the same prompt without it, an
 * embedding in the negative prompt works under `--prompt-syntax a1111`, and the PNG records A1111's `TI hashes` (the
 * expected hashes are hashlib's, from test/fixtures/reference/textual-inversion.json).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readTextChunks } from '../../src/diffusion/png.js';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { FIXTURES, REFERENCE, TINY_MODEL } from '../helpers/reference.js';

const hashes = Object.fromEntries(
  Object.entries((JSON.parse(readFileSync(join(REFERENCE, 'textual-inversion.json'), 'utf8')) as { embeddings: Record<string, { sha256: string }> }).embeddings).map(
    ([name, { sha256 }]) => [name, sha256.slice(0, 12)],
  ),
);

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'imagine-embeddings-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function generate(name: string, prompt: string, negative: string, extra: string[] = []): Promise<{ png: Buffer; stderr: string }> {
  const out = join(work, name);
  const result = await runCli([
    'generate', '--model', TINY_MODEL, '--embeddings', join(FIXTURES, 'embeddings'), '--prompt', prompt, '--negative', negative,
    '--seed', '7', '--steps', '3', '--width', '64', '--height', '64', '--scheduler', 'euler', '--provider', 'cpu', '--out', out, ...extra,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return { png: await readFile(join(out, '0.png')), stderr: result.stderr };
}

test('the embedding word changes the image and is recorded in TI hashes; without it there is no TI hashes field', async () => {
  const without = await generate('without', 'a red house by a river', 'blurry');
  assert.doesNotMatch(readTextChunks(without.png).parameters ?? '', /TI hashes/);
  assert.match(without.stderr, /textual-inversion embeddings: .*moody \(3\)/);

  const withEmbedding = await generate('with', 'a moody red house by a river', 'blurry');
  assert.ok(!pngWithoutTextChunks(withEmbedding.png).equals(pngWithoutTextChunks(without.png)), 'the embedding changes the image');
  // moody has 3 vectors: 6 words + 3 slots = 9 tokens under plain.
  assert.match(withEmbedding.stderr, /prompt: 9\/75 tokens/);
  assert.match(readTextChunks(withEmbedding.png).parameters ?? '', new RegExp(`, TI hashes: "moody: ${hashes['moody']}"(,|$)`, 'm'));
});

test('a1111: an embedding in the negative prompt works, and TI hashes lists the prompt\'s then the negative\'s', async () => {
  const a1111 = ['--prompt-syntax', 'a1111'];
  const plainNegative = await generate('neg-plain', 'a (red:1.2) house, glowy', 'blurry', a1111);
  const embeddingNegative = await generate('neg-emb', 'a (red:1.2) house, glowy', 'inky, blurry', a1111);
  assert.ok(!pngWithoutTextChunks(embeddingNegative.png).equals(pngWithoutTextChunks(plainNegative.png)), 'the negative embedding changes the image');
  const parameters = readTextChunks(embeddingNegative.png).parameters ?? '';
  assert.match(parameters, /\nNegative prompt: inky, blurry\n/);
  assert.match(parameters, new RegExp(`, TI hashes: "glowy: ${hashes['glowy']}, inky: ${hashes['inky']}"(,|$)`, 'm'));
});
