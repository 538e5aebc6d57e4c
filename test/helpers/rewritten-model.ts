/**
 * For the load-time model rewrites (pin-shapes.ts, fuse-attention.ts): deterministic feeds for the tiny UNet, and the
 * check that a rewritten session computes what the exported model does on the same runtime.
 */
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { openSession, type OpenSessionOptions } from '../../src/diffusion/providers.js';
import { maxAbs, maxAbsDiff } from './reference.js';

/** CFG batch 2 for the tiny UNet (text width 32, CLIP's 77 tokens) at latentSide × latentSide latents. */
export function tinyUnetFeeds(latentSide: number, timestep: number): Record<string, ort.Tensor> {
  const sampleDims = [2, 4, latentSide, latentSide];
  return {
    sample: new ort.Tensor('float32', Float32Array.from({ length: 2 * 4 * latentSide * latentSide }, (_, i) => Math.sin(i)), sampleDims),
    timestep: new ort.Tensor('float32', Float32Array.from([timestep, timestep]), [2]),
    encoder_hidden_states: new ort.Tensor('float32', Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => Math.cos(i / 7)), [2, 77, 32]),
  };
}

/**
 * Opens `file` as exported and with `rewrite`, runs both on `feeds` and asserts the first outputs agree within
 * `relative` of the exported output's largest magnitude (which must not be trivial). Returns the difference.
 */
export async function assertRewriteComputesTheSame(
  file: string,
  rewrite: OpenSessionOptions,
  feeds: Record<string, ort.Tensor>,
  relative: number,
): Promise<number> {
  const exported = await openSession(file, 'cpu');
  const rewritten = await openSession(file, 'cpu', rewrite);
  try {
    const expected = Object.values(await exported.run(feeds))[0]!.data as Float32Array;
    const actual = Object.values(await rewritten.run(feeds))[0]!.data as Float32Array;
    assert.ok(maxAbs(expected) > 0.1, `${file}: the output is not trivial`);
    const diff = maxAbsDiff(actual, expected);
    assert.ok(diff <= relative * maxAbs(expected), `${file}: rewritten and exported differ by ${diff}`);
    return diff;
  } finally {
    await exported.release();
    await rewritten.release();
  }
}
