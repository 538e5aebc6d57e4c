import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyOriginalEmphasis, applyOriginalEmphasisToChunks } from '../../src/diffusion/prompt/emphasis.js';

// Expected values worked by hand from A1111's EmphasisOriginal.after_transformers (modules/sd_emphasis.py):
// z *= multipliers per token; z *= original_mean / new_mean.

test('multiplies each token by its weight, then restores the mean (hand-worked example)', () => {
  // 3 tokens × 2 channels. Mean before: 21 / 6 = 3.5. Weighted [1,2 | 6,8 | 5,6]: mean 28 / 6. Factor 3.5 / (28/6) = 0.75.
  const hidden = new Float32Array([1, 2, 3, 4, 5, 6]);
  applyOriginalEmphasis(hidden, [1, 2, 1], 2);
  assert.deepEqual(Array.from(hidden), [0.75, 1.5, 4.5, 6, 3.75, 4.5]);
});

test('a down-weighted token: [x] is 1/1.1', () => {
  // 2 tokens × 1 channel, [2, 4], weights [1, 1/1.1]: mean 3 → (2 + 4/1.1) / 2; factor 3 / that; results below.
  const hidden = new Float32Array([2, 4]);
  const weight = 1 / 1.1;
  applyOriginalEmphasis(hidden, [1, weight], 1);
  const weighted = [2, 4 * Math.fround(weight)];
  const factor = 3 / ((weighted[0]! + weighted[1]!) / 2);
  hidden.forEach((value, i) => assert.ok(Math.abs(value - weighted[i]! * factor) < 1e-6, `${value}`));
  assert.ok(Math.abs((hidden[0]! + hidden[1]!) / 2 - 3) < 1e-6);
});

test('all weights 1 leave the hidden states bit for bit unchanged', () => {
  const values = Float32Array.from({ length: 77 * 8 }, (_, i) => Math.sin(i) * 3);
  const hidden = values.slice();
  applyOriginalEmphasis(hidden, new Float32Array(77).fill(1), 8);
  assert.deepEqual(hidden, values);
});

test('each chunk of a [chunks, 77, dim] batch keeps its own mean', () => {
  const dim = 4;
  const hidden = Float32Array.from({ length: 2 * 77 * dim }, (_, i) => 0.5 + Math.cos(i * 0.37));
  const weights = [new Float32Array(77).fill(1), new Float32Array(77).fill(1)];
  weights[0]![3] = 1.5;
  weights[1]![10] = 0.5;
  const chunkMean = (data: Float32Array, c: number): number => data.subarray(c * 77 * dim, (c + 1) * 77 * dim).reduce((s, v) => s + v, 0) / (77 * dim);
  const before = [chunkMean(hidden, 0), chunkMean(hidden, 1)];
  const original = hidden.slice();
  applyOriginalEmphasisToChunks(hidden, weights, dim);
  for (const c of [0, 1]) assert.ok(Math.abs(chunkMean(hidden, c) - before[c]!) < 1e-5, `chunk ${c} mean`);
  // Token 3 of chunk 0 grew relative to token 4 by exactly its weight.
  const ratio = (data: Float32Array, a: number, b: number) => data[a * dim]! / data[b * dim]!;
  assert.ok(Math.abs(ratio(hidden, 3, 4) / ratio(original, 3, 4) - 1.5) < 1e-5);
  assert.throws(() => applyOriginalEmphasisToChunks(hidden, weights.slice(0, 1), dim), RangeError);
});
