import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeWeightedChunks, tokenizePrompt, type RunTextEncoder } from '../../src/diffusion/prompt/index.js';
import { readFloats, TensorFeeder } from '../../src/diffusion/tensors.js';
import { loadClipTokenizer, type ClipTokenizer } from '../../src/diffusion/tokenizer.js';
import { caseIds, loadCase, readF32, TINY_MODEL } from '../helpers/reference.js';

// The chunks through the real text encoder of the tiny fixture model: a prompt without brackets under `a1111` gives
// diffusers' own embeddings; longer prompts give one 77-token block per chunk, concatenated.

let tokenizer: ClipTokenizer;
let session: ort.InferenceSession;
let runTextEncoder: RunTextEncoder;

before(async () => {
  tokenizer = await loadClipTokenizer(join(TINY_MODEL, 'tokenizer'));
  session = await ort.InferenceSession.create(join(TINY_MODEL, 'text_encoder/model.onnx'));
  runTextEncoder = async (ids, rows) => {
    const feeder = TensorFeeder.forInput(session, 'input_ids', [rows, ids.length / rows]);
    const outputs = await session.run({ input_ids: feeder.setInts(ids) });
    const hidden = outputs[session.outputNames[0]!] as ort.Tensor;
    const dims = hidden.dims as [number, number, number];
    return { hidden: readFloats(hidden, new Float32Array(dims[0] * dims[1] * dims[2])), dim: dims[2] };
  };
});

after(async () => {
  await session.release();
});

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

test("prompts without brackets give diffusers' prompt_embeds under a1111 too", async () => {
  for (const id of caseIds()) {
    const reference = loadCase(id);
    const { chunks } = tokenizePrompt(tokenizer, reference.prompt, 'a1111');
    assert.equal(chunks.length, 1, id);
    const ids = Array.isArray(reference.input_ids[0]) ? (reference.input_ids[0] as number[]) : (reference.input_ids as number[]);
    assert.deepEqual(Array.from(chunks[0]!.ids), ids, `${id}: A1111 pads with EOS as diffusers pads SD 1.5 prompts`);
    const { embeddings, dims } = await encodeWeightedChunks(runTextEncoder, chunks);
    assert.deepEqual(dims, [1, 77, 32]);
    const expected = readF32(id, 'prompt_embeds.f32');
    assert.ok(maxAbsDiff(embeddings, expected) < 1e-4, `${id}: differs by ${maxAbsDiff(embeddings, expected)}`);
  }
});

test('a long prompt: each 77-token block is its chunk encoded on its own', async () => {
  const { chunks } = tokenizePrompt(tokenizer, Array(80).fill('dog').join(' '), 'a1111');
  assert.equal(chunks.length, 2);
  const { embeddings, dims } = await encodeWeightedChunks(runTextEncoder, chunks);
  assert.deepEqual(dims, [1, 154, 32]);
  for (const [i, chunk] of chunks.entries()) {
    const alone = await runTextEncoder(chunk.ids, 1);
    assert.ok(maxAbsDiff(embeddings.subarray(i * 77 * 32, (i + 1) * 77 * 32), alone.hidden) < 1e-5, `chunk ${i}`);
  }
});

test('a weighted prompt: each token scaled by its weight times one common factor that restores the mean', async () => {
  const { chunks } = tokenizePrompt(tokenizer, 'a (dog:1.5) in [batman] costume', 'a1111');
  const chunk = chunks[0]!;
  const plain = await runTextEncoder(chunk.ids, 1);
  const { embeddings } = await encodeWeightedChunks(runTextEncoder, chunks);
  const mean = (values: Float32Array) => values.reduce((sum, v) => sum + v, 0) / values.length;
  assert.ok(Math.abs(mean(embeddings) - mean(plain.hidden)) < 1e-5);
  const factor = embeddings[0]! / plain.hidden[0]!; // BOS, weight 1
  for (let t = 0; t < 77; t++) {
    for (let c = 0; c < 32; c++) {
      const i = t * 32 + c;
      const expected = plain.hidden[i]! * chunk.weights[t]! * factor;
      assert.ok(Math.abs(embeddings[i]! - expected) < 1e-5, `token ${t} channel ${c}`);
    }
  }
  // The tokens the brackets weighted: dog ×1.5, batman ÷1.1.
  assert.deepEqual(Array.from(chunk.weights.subarray(0, 7)), [1, 1, 1.5, 1, Math.fround(1 / 1.1), 1, 1]);
});

test('(cat:1.0) encodes bit for bit as cat (weight 1 is no emphasis at all)', async () => {
  const weighted = tokenizePrompt(tokenizer, 'a (cat:1.0) on a sofa', 'a1111');
  const plainText = tokenizePrompt(tokenizer, 'a cat on a sofa', 'a1111');
  assert.deepEqual(weighted.chunks, plainText.chunks);
  const a = await encodeWeightedChunks(runTextEncoder, weighted.chunks);
  const b = await encodeWeightedChunks(runTextEncoder, plainText.chunks);
  assert.deepEqual(a.embeddings, b.embeddings);
});
