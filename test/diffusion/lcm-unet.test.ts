/**
 * LCM-distilled UNets (a `timestep_cond` input): the guidance embedding equals diffusers' formula computed in numpy
 * (scripts/make-lcm-unet.py), the surgery that made test/fixtures/tiny-lcm adds it where diffusers does (zero
 * condition = tiny-sd's UNet), and a generation feeds it: one batch row per image, the embedding of the request's
 * CFG, no negative prompt, as LatentConsistencyModelPipeline runs.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { guidanceEmbeddingDim, guidanceScaleEmbedding } from '../../src/diffusion/guidance-embedding.js';
import { loadPipeline } from '../../src/diffusion/load.js';
import type { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { openSession } from '../../src/diffusion/providers.js';
import { createImageNoise } from '../../src/diffusion/rng/index.js';
import { FIXTURES, REFERENCE, TINY_MODEL, maxAbs, maxAbsDiff } from '../helpers/reference.js';
import { tinyUnetFeeds } from '../helpers/rewritten-model.js';

const TINY_LCM = join(FIXTURES, 'tiny-lcm');
const reference = JSON.parse(readFileSync(join(REFERENCE, 'lcm-guidance-embedding.json'), 'utf8')) as {
  embeddingDim: number;
  cases: { guidanceScale: number; embedding: number[] }[];
  odd: { guidanceScale: number; embeddingDim: number; embedding: number[] };
};

/**
 * Within 4 float32 ulps of each angle w·1000·f_i (plus 1e-6): numpy's and torch's float32 exp and sin are each
 * within an ulp or so of the true value, not bit-equal to each other, and an ulp of an angle of 7000 is 5e-4.
 */
function assertEmbeddingClose(ours: Float32Array, expected: number[], guidanceScale: number, dim: number): void {
  assert.equal(ours.length, expected.length);
  const half = Math.floor(dim / 2);
  for (const [i, value] of expected.entries()) {
    const angle = i >= 2 * half ? 0 : (guidanceScale - 1) * 1000 * Math.exp((-(i % half) * Math.log(10000)) / (half - 1));
    const ulp = angle === 0 ? 0 : 2 ** (Math.floor(Math.log2(angle)) - 23);
    const difference = Math.abs(ours[i]! - value);
    assert.ok(difference <= 4 * ulp + 1e-6, `cfg ${guidanceScale}, element ${i}: ${ours[i]} vs ${value} (angle ${angle})`);
  }
}

test("the guidance embedding is diffusers' get_guidance_scale_embedding(guidance_scale − 1) (numpy reference)", () => {
  for (const { guidanceScale, embedding } of reference.cases) {
    assertEmbeddingClose(guidanceScaleEmbedding(guidanceScale, reference.embeddingDim), embedding, guidanceScale, reference.embeddingDim);
  }
  // CFG 1 is w = 0: sin 0 = 0 and cos 0 = 1, exactly.
  assert.deepEqual([...guidanceScaleEmbedding(1, 4)], [0, 0, 1, 1]);
  const { guidanceScale, embeddingDim, embedding } = reference.odd;
  assertEmbeddingClose(guidanceScaleEmbedding(guidanceScale, embeddingDim), embedding, guidanceScale, embeddingDim);
  assert.equal(guidanceScaleEmbedding(guidanceScale, embeddingDim)[embeddingDim - 1], 0);
});

test('the tiny LCM UNet adds timestep_cond to the time embedding only: a zero condition gives tiny-sd\'s output', async () => {
  const plain = await openSession(join(TINY_MODEL, 'unet/model.onnx'), 'cpu');
  const lcm = await openSession(join(TINY_LCM, 'unet/model.onnx'), 'cpu');
  try {
    const feeds = tinyUnetFeeds(8, 501);
    const zero = new ort.Tensor('float32', new Float32Array(2 * reference.embeddingDim), [2, reference.embeddingDim]);
    const embedding = new Float32Array(2 * reference.embeddingDim);
    embedding.set(reference.cases[1]!.embedding, 0);
    embedding.set(reference.cases[1]!.embedding, reference.embeddingDim);
    const guided = new ort.Tensor('float32', embedding, [2, reference.embeddingDim]);
    const expected = Object.values(await plain.run(feeds))[0]!.data as Float32Array;
    const withZero = Object.values(await lcm.run({ ...feeds, timestep_cond: zero }))[0]!.data as Float32Array;
    const withGuidance = Object.values(await lcm.run({ ...feeds, timestep_cond: guided }))[0]!.data as Float32Array;
    assert.ok(maxAbs(expected) > 0.1);
    assert.ok(maxAbsDiff(withZero, expected) <= 1e-6 * maxAbs(expected), `zero condition: ${maxAbsDiff(withZero, expected)}`);
    assert.ok(maxAbsDiff(withGuidance, expected) > 1e-3, 'the condition reaches the output');
  } finally {
    await plain.release();
    await lcm.release();
  }
});

describe('a generation on an LCM UNet', () => {
  let pipeline: StableDiffusionPipeline | undefined;
  const lcm = () => pipeline!;
  before(async () => {
    pipeline = await loadPipeline(TINY_LCM, { provider: 'cpu', safetyChecker: false });
  });
  after(async () => {
    await pipeline?.release();
    await pipeline?.model.release();
  });

  test('reads the embedding size from the UNet and the LCM scheduler from the folder', () => {
    assert.equal(guidanceEmbeddingDim(lcm().model.unet), reference.embeddingDim);
    assert.equal(lcm().createScheduler({}).name, 'lcm');
  });

  test("equals the LCM loop run by hand with the numpy embedding: one row per image, the prompt alone, diffusers' steps", async () => {
    const { guidanceScale, embedding } = reference.cases[3]!; // cfg 8
    const request = { prompt: 'a lighthouse at dusk', negativePrompt: 'ignored by LCM', seed: 42n, steps: 4, cfg: guidanceScale, width: 64, height: 64, batch: 2 };
    const result = await lcm().generate(request);
    assert.equal(result.scheduler, 'lcm');

    // By hand: LatentConsistencyModelPipeline.__call__ over the same UNet session.
    const rows = 2;
    const dim = reference.embeddingDim;
    const text = await lcm().encodeText(request.prompt, '', rows, false);
    const scheduler = lcm().createScheduler({});
    scheduler.setTimesteps(request.steps);
    const generator = createImageNoise('cpu', request.seed);
    const count = rows * 4 * 8 * 8;
    let latents = generator.randn(count);
    for (let i = 0; i < count; i++) latents[i] = latents[i]! * scheduler.initNoiseSigma;
    const condition = new Float32Array(rows * dim);
    for (let row = 0; row < rows; row++) condition.set(embedding, row * dim);
    const session = lcm().model.unet.session;
    for (const t of scheduler.timesteps) {
      const outputs = await session.run({
        sample: new ort.Tensor('float32', Float32Array.from(scheduler.scaleModelInput(latents, t)), [rows, 4, 8, 8]),
        timestep: new ort.Tensor('float32', Float32Array.from([t, t]), [rows]),
        encoder_hidden_states: new ort.Tensor('float32', Float32Array.from(text.embeddings), text.dims),
        timestep_cond: new ort.Tensor('float32', condition, [rows, dim]),
      });
      latents = Float32Array.from(scheduler.step(outputs[session.outputNames[0]!]!.data as Float32Array, t, latents, generator));
    }
    const difference = maxAbsDiff(result.latents, latents);
    assert.ok(difference <= 1e-5 * Math.max(1, maxAbs(latents)), `final latents differ by ${difference}`);
  });

  test('the device loop (forced on the CPU) feeds the embedding too: it matches the JS loop', async () => {
    const request = { prompt: 'a lighthouse at dusk', seed: 9n, steps: 4, cfg: 8, width: 64, height: 64, batch: 2 };
    const js = await lcm().generate(request, { deviceLoop: 'never' });
    const device = await lcm().generate(request, { deviceLoop: 'always' });
    assert.equal(device.loop, 'device');
    const difference = maxAbsDiff(device.latents, js.latents);
    assert.ok(difference <= 1e-5 * maxAbs(js.latents), `loops differ by ${difference}`);
  });

  test('the CFG scale reaches the UNet: another scale, another image; CFG 1 is the embedding of w = 0, not "no guidance"', async () => {
    const base = { prompt: 'a lighthouse at dusk', seed: 7n, steps: 2, width: 64, height: 64 };
    const one = await lcm().generate({ ...base, cfg: 1 });
    const two = await lcm().generate({ ...base, cfg: 2 });
    const again = await lcm().generate({ ...base, cfg: 2 });
    assert.ok(maxAbsDiff(one.latents, two.latents) > 1e-4, 'cfg 1 and 2 give different latents');
    assert.deepEqual(again.latents, two.latents);
  });
});
