/**
 * Clip skip (clip-skip.ts): the load-time rewrite of the tiny text encoder, checked against the CLIP transformer
 * computed in numpy from the same weights without ONNX Runtime (scripts/clip-skip-reference.py →
 * test/fixtures/reference/clip-skip.json; see test/fixtures/README.md).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { ClipSkipRewriteError, exposeClipSkipOutputs } from '../../src/diffusion/clip-skip.js';
import { InvalidRequestError } from '../../src/diffusion/errors.js';
import { validateRequest } from '../../src/diffusion/pipeline.js';
import { textEncoderRunner } from '../../src/diffusion/text-conditioning.js';
import { TINY_MODEL, tinyPipelineForSuite } from '../helpers/reference.js';

interface ClipSkipReference {
  layers: number;
  cases: { prompt: string; input_ids: number[]; clip_skip: Record<'1' | '2', number[]> }[];
}
const reference = JSON.parse(readFileSync(join(TINY_MODEL, '..', 'reference', 'clip-skip.json'), 'utf8')) as ClipSkipReference;

const pipeline = tinyPipelineForSuite();

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

test('clip skip 1 and 2 match the numpy CLIP transformer within 1e-4 relative', async () => {
  for (const { prompt, input_ids: ids, clip_skip: expected } of reference.cases) {
    assert.deepEqual(Array.from(pipeline().model.tokenizer.encode(prompt)), ids, `${prompt}: the reference's ids are our tokenizer's`);
    for (const clipSkip of [1, 2] as const) {
      const { hidden } = await textEncoderRunner(pipeline().model.textEncoder, clipSkip)(Int32Array.from(ids), 1);
      const error = relativeError(hidden, expected[clipSkip]);
      assert.ok(error < 1e-4, `${prompt}, clip skip ${clipSkip}: relative error ${error}`);
    }
    // The two really differ, so matching both is not one comparison made twice.
    assert.ok(relativeError(Float32Array.from(expected['2']), expected['1']) > 1e-2);
  }
});

test("the rewrite leaves last_hidden_state bit for bit as the export computes it", async () => {
  const original = await ort.InferenceSession.create(join(TINY_MODEL, 'text_encoder/model.onnx'));
  try {
    const ids = Int32Array.from(reference.cases[0]!.input_ids);
    const outputs = await original.run({ input_ids: new ort.Tensor('int32', ids, [1, 77]) });
    const exported = outputs[original.outputNames[0]!]!.data as Float32Array;
    const { hidden } = await textEncoderRunner(pipeline().model.textEncoder, 1)(ids, 1);
    assert.deepEqual(hidden, exported);
  } finally {
    await original.release();
  }
});

test('a graph without the CLIP module paths is refused by the rewrite, and clip skip 3 by the request check', () => {
  const unet = new Uint8Array(readFileSync(join(TINY_MODEL, 'unet/model.onnx')));
  assert.throws(() => exposeClipSkipOutputs(unet), ClipSkipRewriteError);
  const request = { prompt: 'x', seed: 0n, steps: 1, cfg: 7, width: 64, height: 64 };
  assert.throws(() => validateRequest({ ...request, clipSkip: 3 }), InvalidRequestError);
  assert.doesNotThrow(() => validateRequest({ ...request, clipSkip: 2 }));
});
