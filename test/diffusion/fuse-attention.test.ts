/**
 * Attention fusion (fuse-attention.ts): the export's attention blocks become ORT's MultiHeadAttention. ONNX Runtime
 * itself reads the rewritten models, the unfused models on the same runtime are the reference for each block's
 * output, and whole generations must still reproduce diffusers.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { fuseAttention } from '../../src/diffusion/fuse-attention.js';
import { loadPipeline } from '../../src/diffusion/load.js';
import { graphOpTypes } from '../../src/diffusion/onnx-proto.js';
import type { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { openSession } from '../../src/diffusion/providers.js';
import {
  assertWithinReference,
  describeDeviation,
  EXACT_BOUNDS,
  FIXTURES,
  FP16_BOUNDS,
  measureAgainstReference,
  runReferenceCase,
  TINY_MODEL,
} from '../helpers/reference.js';
import { assertRewriteComputesTheSame, tinyUnetFeeds } from '../helpers/rewritten-model.js';

const count = (ops: string[], op: string): number => ops.filter((type) => type === op).length;

async function modelBytes(folder: string, part: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(join(folder, part, 'model.onnx')));
}

describe('fuseAttention on the tiny model', () => {
  test('fuses every attention block of the UNet (12) and the VAE decoder (1); CLIP attention, which has a mask, is left alone', async () => {
    const unet = fuseAttention(await modelBytes(TINY_MODEL, 'unet'));
    assert.deepEqual({ fused: unet.fused, skipped: unet.skipped }, { fused: 12, skipped: 0 });
    const ops = graphOpTypes(unet.model);
    assert.equal(count(ops, 'MultiHeadAttention'), 12);
    assert.equal(count(ops, 'Softmax'), 0);
    assert.equal(ops.length, unet.nodesAfter);
    // The block's nodes and the scale arithmetic only they read are gone (measured: 2038 → 1309 nodes).
    assert.ok(unet.nodesAfter < unet.nodesBefore - 12 * 20, `${unet.nodesBefore} → ${unet.nodesAfter}`);

    const decoder = fuseAttention(await modelBytes(TINY_MODEL, 'vae_decoder'));
    assert.deepEqual({ fused: decoder.fused, skipped: decoder.skipped }, { fused: 1, skipped: 0 });

    // CLIP's causal mask is added to the scores before the Softmax: not the pattern, so the model is returned as is.
    const textEncoderBytes = await modelBytes(TINY_MODEL, 'text_encoder');
    const textEncoder = fuseAttention(textEncoderBytes);
    assert.deepEqual({ fused: textEncoder.fused, skipped: textEncoder.skipped }, { fused: 0, skipped: 2 });
    assert.equal(textEncoder.model, textEncoderBytes);
  });

  test('the fused UNet and VAE decoder compute what the exported ones do', async () => {
    // Same arithmetic in another order (measured 9.7e-7 for the UNet).
    await assertRewriteComputesTheSame(join(TINY_MODEL, 'unet', 'model.onnx'), { fuseAttention: true }, tinyUnetFeeds(16, 501), 1e-5);
    const latents = new ort.Tensor('float32', Float32Array.from({ length: 4 * 16 * 16 }, (_, i) => Math.sin(i / 3)), [1, 4, 16, 16]);
    await assertRewriteComputesTheSame(join(TINY_MODEL, 'vae_decoder', 'model.onnx'), { fuseAttention: true }, { latent_sample: latents }, 1e-5);
  });

  test('openSession says how many blocks it fused', async () => {
    const lines: string[] = [];
    const session = await openSession(join(TINY_MODEL, 'unet', 'model.onnx'), 'cpu', { fuseAttention: true, log: (line) => lines.push(line) });
    await session.release();
    assert.deepEqual(lines, ['12 attention block(s) fused into MultiHeadAttention (2038 → 1309 nodes)']);
  });
});

describe('pipelines with fused attention reproduce diffusers', () => {
  const lines: string[] = [];
  let pipeline: StableDiffusionPipeline;
  let fp16: StableDiffusionPipeline;
  before(async () => {
    pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', fuseAttention: true, log: (line) => lines.push(line) });
    fp16 = await loadPipeline(join(FIXTURES, 'variants', 'fp16'), { provider: 'cpu', fuseAttention: true, pinUnetShapes: true });
  });
  after(async () => {
    for (const loaded of [pipeline, fp16]) {
      await loaded?.release();
      await loaded?.model.release();
    }
  });

  test('the load log names the fused parts', () => {
    assert.ok(lines.includes('unet: 12 attention block(s) fused into MultiHeadAttention (2038 → 1309 nodes)'), lines.join('\n'));
    assert.ok(lines.some((line) => /^vae_decoder: 1 attention block\(s\) fused/.test(line)), lines.join('\n'));
  });

  // p1 euler, p3 euler_a, p4 ddim with two images (UNet batch 4), p5 dpmpp_2m karras.
  for (const id of ['p1', 'p3', 'p4', 'p5']) {
    test(`case ${id}`, async (t) => {
      const run = await runReferenceCase(pipeline, id);
      const deviation = await measureAgainstReference(run);
      t.diagnostic(describeDeviation(`${id} fused attention`, deviation));
      assertWithinReference(run, deviation, EXACT_BOUNDS, id);
    });
  }

  test('fp16 export, fused and with pinned shapes: case p1 on the JS and the device loop', async (t) => {
    for (const deviceLoop of ['never', 'always'] as const) {
      const run = await runReferenceCase(fp16, 'p1', { deviceLoop });
      const deviation = await measureAgainstReference(run);
      t.diagnostic(describeDeviation(`fp16 p1 fused + pinned, ${deviceLoop}`, deviation));
      assertWithinReference(run, deviation, FP16_BOUNDS, `fp16 p1 ${deviceLoop}`);
    }
  });
});
