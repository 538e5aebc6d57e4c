/**
 * Textual-inversion embeddings (textual-inversion.ts, tensor-files.ts): the fixture files of every layout read as
 * torch and numpy read them, and the tiny text encoder given them at load computes what A1111 computes with the
 * embedding's vectors at the name's positions — both checked against scripts/textual-inversion-reference.py
 * (test/fixtures/reference/textual-inversion.json; see test/fixtures/README.md).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { loadPipeline } from '../../src/diffusion/load.js';
import type { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { chunkFragments, tokenizePrompt, type ChunkLayout } from '../../src/diffusion/prompt/index.js';
import { encodeText } from '../../src/diffusion/text-conditioning.js';
import { TensorFileError, readTorchFile } from '../../src/diffusion/tensor-files.js';
import {
  appendTokenEmbeddings,
  loadEmbeddingsFolder,
  shortHash,
  tokenEmbeddingTable,
  type EmbeddingMatcher,
} from '../../src/diffusion/textual-inversion.js';
import { FIXTURES, REFERENCE, TINY_MODEL } from '../helpers/reference.js';

interface TextualInversionReference {
  dims: [number, number];
  embeddings: Record<string, { file: string; shape: [number, number]; vectors: number[]; sha256: string }>;
  cases: { prompt: string; syntax: 'plain' | 'a1111'; clip_skip: number; sequence: string[]; output: number[] }[];
}
const reference = JSON.parse(readFileSync(join(REFERENCE, 'textual-inversion.json'), 'utf8')) as TextualInversionReference;
const EMBEDDINGS = join(FIXTURES, 'embeddings');
const BROKEN = join(FIXTURES, 'embeddings-broken');

/** max |a − b| / max |b|. */
function relativeError(actual: Float32Array, expected: readonly number[]): number {
  assert.equal(actual.length, expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return diff / scale;
}

test('every fixture layout reads as torch.load / numpy read it, with the sha256 hashlib computes', async () => {
  const warnings: string[] = [];
  const { embeddings, skipped } = await loadEmbeddingsFolder(EMBEDDINGS, (line) => warnings.push(line));
  assert.deepEqual(skipped, []);
  assert.deepEqual(warnings, []);
  assert.deepEqual(embeddings.map((embedding) => embedding.name).sort(), Object.keys(reference.embeddings).sort());
  for (const embedding of embeddings) {
    const expected = reference.embeddings[embedding.name]!;
    assert.equal(embedding.file, expected.file);
    assert.deepEqual([embedding.vectorCount, embedding.width], expected.shape, embedding.name);
    assert.deepEqual(Array.from(embedding.vectors), expected.vectors.map(Math.fround), embedding.name);
    assert.equal(embedding.sha256, expected.sha256);
    assert.equal(shortHash(embedding), expected.sha256.slice(0, 12));
  }
});

test('a broken file, a file for another model and a pickle that imports os.system are skipped with a warning; the rest loads', async () => {
  const warnings: string[] = [];
  const { embeddings, skipped } = await loadEmbeddingsFolder(BROKEN, (line) => warnings.push(line));
  // wide.safetensors reads (the width check needs the text encoder): it is skipped when the model loads, below.
  assert.deepEqual(embeddings.map((embedding) => embedding.name).sort(), ['fine', 'wide']);
  assert.deepEqual(skipped.map(({ file }) => file).sort(), ['evil.pt', 'garbage.safetensors']);
  assert.match(skipped.find(({ file }) => file === 'evil.pt')!.reason, /os\.system.*refused/);
  assert.equal(warnings.length, 2);
  assert.throws(() => readTorchFile(readFileSync(join(BROKEN, 'evil.pt'))), TensorFileError);

  const logs: string[] = [];
  const pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false, embeddingsDir: BROKEN, log: (line) => logs.push(line) });
  try {
    assert.deepEqual(pipeline.model.embeddings.embeddings.map((embedding) => embedding.name), ['fine']);
    assert.ok(logs.some((line) => /wide\.safetensors skipped: .*width 768.*32/.test(line)), logs.join('\n'));
  } finally {
    await pipeline.release();
    await pipeline.model.release();
  }
});

test('a missing embeddings folder is an empty one', async () => {
  assert.deepEqual(await loadEmbeddingsFolder(join(FIXTURES, 'no-such-folder')), { embeddings: [], skipped: [] });
});

test('appendTokenEmbeddings adds rows after the vocabulary and keeps the table as it was', () => {
  const model = new Uint8Array(readFileSync(join(TINY_MODEL, 'text_encoder/model.onnx')));
  const before = tokenEmbeddingTable(model);
  assert.deepEqual(before, { initializer: 'embeddings.token_embedding.weight', rows: 49408, width: 32, dtype: 'float32' });
  const { model: rewritten, table } = appendTokenEmbeddings(model, new Float32Array(3 * 32).fill(0.5));
  assert.deepEqual(table, before);
  assert.deepEqual(tokenEmbeddingTable(rewritten), { ...before, rows: 49408 + 3 });
  // The rows, and at most a few more bytes where the lengths' varints grow.
  assert.ok(rewritten.length - model.length - 3 * 32 * 4 <= 6 && rewritten.length - model.length >= 3 * 32 * 4);
});

test('a float16 token-embedding table gets float16 rows: ids past the vocabulary read them, earlier ids are unchanged', async () => {
  const model = new Uint8Array(readFileSync(join(REFERENCE, 'token-embedding-fp16.onnx')));
  assert.deepEqual(tokenEmbeddingTable(model), { initializer: 'embeddings.token_embedding.weight', rows: 5, width: 4, dtype: 'float16' });
  // Values a float16 holds exactly, so the expected output does not depend on the conversion under test.
  const rows = Float32Array.from([0.5, -1.25, 2, 0.125, -0.375, 3.5, -8, 0.0625]);
  const run = async (bytes: Uint8Array, ids: number[]) => {
    const session = await ort.InferenceSession.create(bytes);
    try {
      const output = await session.run({ input_ids: new ort.Tensor('int32', Int32Array.from(ids), [1, ids.length]) });
      return Array.from(output['embeddings']!.data as Float32Array);
    } finally {
      await session.release();
    }
  };
  const rewritten = appendTokenEmbeddings(model, rows).model;
  assert.deepEqual(await run(rewritten, [5, 6]), Array.from(rows));
  assert.deepEqual(await run(rewritten, [0, 4]), await run(model, [0, 4]));
});

/** A matcher with one embedding: the token 900 followed by 901 is a 3-vector embedding with ids 50000–50002. */
const matcher: EmbeddingMatcher = {
  findAt: (tokens, position) => (tokens[position] === 900 && tokens[position + 1] === 901 ? { name: 'emb', ids: [50000, 50001, 50002], tokenLength: 2 } : null),
};
const layout: ChunkLayout = { chunkLength: 75, bosTokenId: 49406, eosTokenId: 49407, commaTokenId: 267, commaPaddingBacktrack: 20 };

test("A1111's tokenize_line never splits an embedding across chunks: one that does not fit starts the next chunk", () => {
  // 73 words, then the embedding (3 slots): only 2 are left, so chunk 1 ends after the 73 words (A1111: next_chunk()).
  const tokens = [...Array<number>(73).fill(1929), 900, 901, 1929];
  const { chunks, tokenCount, embeddings } = chunkFragments([{ text: 'x', weight: 1.2 }], () => tokens, layout);
  // Without a matcher 900 901 are two words: 76 tokens, the last one in a second chunk.
  assert.equal(chunks.length, 2);
  assert.equal(tokenCount, 76);
  assert.deepEqual(embeddings, []);

  const placed = chunkFragments([{ text: 'x', weight: 1.2 }], () => tokens, layout, matcher);
  assert.equal(placed.chunks.length, 2);
  // Chunk 1: BOS, 73 words, EOS padding to 77; counted as a full 75 (A1111's next_chunk(is_last=False)).
  assert.deepEqual(Array.from(placed.chunks[0]!.ids.slice(73, 77)), [1929, 49407, 49407, 49407]);
  // Chunk 2: BOS, the embedding's ids with the fragment's weight, the last word, EOS.
  assert.deepEqual(Array.from(placed.chunks[1]!.ids.slice(0, 6)), [49406, 50000, 50001, 50002, 1929, 49407]);
  assert.deepEqual(Array.from(placed.chunks[1]!.weights.slice(0, 5)), [1, 1.2, 1.2, 1.2, 1.2].map(Math.fround));
  assert.equal(placed.tokenCount, 75 + 4);
  assert.deepEqual(placed.embeddings, ['emb']);
});

test('an embedding that fits exactly stays in the chunk', () => {
  const tokens = [...Array<number>(72).fill(1929), 900, 901];
  const { chunks, tokenCount } = chunkFragments([{ text: 'x', weight: 1 }], () => tokens, layout, matcher);
  assert.equal(chunks.length, 1);
  assert.deepEqual(Array.from(chunks[0]!.ids.slice(72, 77)), [1929, 50000, 50001, 50002, 49407]);
  assert.equal(tokenCount, 75);
});

describe('the tiny text encoder with the fixture embeddings', () => {
  let pipeline: StableDiffusionPipeline | undefined;
  before(async () => {
    pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false, embeddingsDir: EMBEDDINGS });
  });
  after(async () => {
    await pipeline?.release();
    await pipeline?.model.release();
  });

  test('matches the numpy CLIP with the vectors substituted, within 1e-4 relative (plain, a1111, clip skip 2)', async () => {
    const model = pipeline!.model;
    for (const { prompt, syntax, clip_skip: clipSkip, sequence, output } of reference.cases) {
      const { embeddings, dims, promptTokens, textualInversions } = await encodeText(model, prompt, '', 1, false, syntax, clipSkip);
      assert.deepEqual(dims, [1, 77, 32]);
      const error = relativeError(embeddings, output);
      assert.ok(error < 1e-4, `${prompt} (${syntax}, clip skip ${clipSkip}): relative error ${error}`);
      // The token counter counts each vector as a token, as A1111 does.
      assert.equal(promptTokens.tokenCount, sequence.length - 2, prompt);
      const names = [...new Set(sequence.map((token) => /^(\w+)\[\d+\]$/.exec(token)?.[1]).filter((name) => name !== undefined))];
      assert.deepEqual(
        textualInversions,
        names.map((name) => ({ name, hash: reference.embeddings[name]!.sha256.slice(0, 12) })),
      );
    }
  });

  test('the same prompt without embeddings is the export as it was: the rows are added, nothing else changes', async () => {
    const plainPipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false });
    try {
      const withRows = await encodeText(pipeline!.model, 'a red dog by the river', 'blurry', 1, true, 'a1111');
      const without = await encodeText(plainPipeline.model, 'a red dog by the river', 'blurry', 1, true, 'a1111');
      assert.deepEqual(withRows.embeddings, without.embeddings);
      assert.deepEqual(withRows.textualInversions, []);
    } finally {
      await plainPipeline.release();
      await plainPipeline.model.release();
    }
  });

  test("a name matches through CLIP's lowercasing tokenizer, inside punctuation, and in the negative prompt", async () => {
    const { tokenizer, embeddings } = pipeline!.model;
    const shouting = tokenizePrompt(tokenizer, 'a MOODY dog, glowy.', 'a1111', embeddings);
    assert.deepEqual(shouting.embeddings, ['moody', 'glowy']);
    const negative = await encodeText(pipeline!.model, 'a dog', 'inky, blurry', 1, true, 'a1111');
    assert.deepEqual(negative.textualInversions.map(({ name }) => name), ['inky']);
    // "glowing" is not "glowy": a name matches only as its whole token sequence.
    assert.deepEqual(tokenizePrompt(tokenizer, 'a glowing dog', 'a1111', embeddings).embeddings, []);
  });

  test('under plain, vectors count as tokens and are truncated like them', () => {
    const { tokenizer, embeddings } = pipeline!.model;
    const prompt = `${Array(73).fill('dog').join(' ')} moody`;
    const tokens = tokenizePrompt(tokenizer, prompt, 'plain', embeddings);
    assert.equal(tokens.tokenCount, 76);
    assert.equal(tokens.droppedTokenCount, 1);
    assert.deepEqual(tokens.embeddings, ['moody']);
    const ids = Array.from(tokens.chunks[0]!.ids);
    const firstId = pipeline!.model.embeddings.get('moody')!.ids[0]!;
    assert.deepEqual(ids.slice(74), [firstId, firstId + 1, 49407]);
  });
});

test('an embedding file in a subfolder is found; a second file with a taken name is skipped', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'imagine-ti-'));
  try {
    const bytes = readFileSync(join(EMBEDDINGS, 'glowy.safetensors'));
    await writeFile(join(folder, 'glowy.safetensors'), bytes);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(folder, 'sub'));
    await writeFile(join(folder, 'sub', 'glowy.pt'), readFileSync(join(EMBEDDINGS, 'papery.pt')));
    await writeFile(join(folder, 'sub', 'other.safetensors'), bytes);
    const { embeddings, skipped } = await loadEmbeddingsFolder(folder);
    assert.deepEqual(embeddings.map(({ name, file }) => [name, file]), [['glowy', 'glowy.safetensors'], ['other', join('sub', 'other.safetensors')]]);
    assert.equal(skipped.length, 1);
    assert.match(skipped[0]!.reason, /already taken by glowy\.safetensors/);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test("optimum's layout (tokenizer.json only) matches the names and gives the same conditioning as tiny-sd's", async () => {
  const open = (folder: string) => loadPipeline(folder, { provider: 'cpu', safetyChecker: false, embeddingsDir: EMBEDDINGS });
  const [slow, fast] = [await open(TINY_MODEL), await open(join(FIXTURES, 'variants', 'optimum-layout'))];
  try {
    const prompt = 'a (moody:1.2) dog, inky';
    const a = await encodeText(slow.model, prompt, 'glowy', 1, true, 'a1111');
    const b = await encodeText(fast.model, prompt, 'glowy', 1, true, 'a1111');
    assert.deepEqual(b.textualInversions.map(({ name }) => name), ['moody', 'inky', 'glowy']);
    assert.deepEqual(b.textualInversions, a.textualInversions);
    assert.deepEqual(b.embeddings, a.embeddings);
  } finally {
    for (const pipeline of [slow, fast]) {
      await pipeline.release();
      await pipeline.model.release();
    }
  }
});
