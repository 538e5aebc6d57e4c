/**
 * The engine reads model facts from the model folder, not from the one fixture it was written against: tensor dtypes
 * from session metadata, the external-data file the ONNX model names, the tokenizer in whichever format the folder
 * ships. Each folder under test/fixtures/variants/ is tiny-sd reshaped like a kind of real export
 * (scripts/make-model-variants.py made them; see its header), and each must reproduce diffusers' reference cases —
 * exactly where the variant computes the same thing, within a measured tolerance where it by design does not.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { loadPipeline } from '../../src/diffusion/load.js';
import type { ModelPart, StableDiffusionModel } from '../../src/diffusion/model.js';
import { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import {
  assertTokenIds,
  assertWithinReference,
  caseIds,
  describeDeviation,
  EXACT_BOUNDS,
  FIXTURES,
  FP16_BOUNDS,
  fractionWithin,
  loadCase,
  maxAbs,
  maxAbsDiff,
  measureAgainstReference,
  readReferencePng,
  runReferenceCase,
  TINY_MODEL,
} from '../helpers/reference.js';

const VARIANTS = join(FIXTURES, 'variants');
const FP16 = join(VARIANTS, 'fp16');
const INT64_TIMESTEP = join(VARIANTS, 'int64-timestep');
const OPTIMUM = join(VARIANTS, 'optimum-layout');

function dtypes(part: ModelPart): Record<string, string> {
  const described: Record<string, string> = {};
  for (const [name, contract] of part.inputs) described[`in ${name}`] = contract.dtype;
  for (const [name, contract] of part.outputs) described[`out ${name}`] = contract.dtype;
  return described;
}

const TEXT_ENCODER_FP32 = { 'in input_ids': 'int32', 'out last_hidden_state': 'float32', 'out pooler_output': 'float32' };

describe('fp16 export: float16 UNet, VAE and safety checker fed by an fp32 text encoder', () => {
  let cli: CliResult | undefined;
  let pipeline: StableDiffusionPipeline;
  before(async () => {
    pipeline = await loadPipeline(FP16, { provider: 'cpu' });
  });
  after(async () => {
    await pipeline?.model.release();
  });

  test('dtypes come from each session\'s metadata', () => {
    const { model } = pipeline;
    assert.equal(model.unet.inputs.get('sample')?.dtype, 'float16');
    assert.deepEqual(dtypes(model.unet), {
      'in sample': 'float16',
      'in timestep': 'float16',
      'in encoder_hidden_states': 'float16',
      'out out_sample': 'float16',
    });
    assert.deepEqual(dtypes(model.vaeDecoder), { 'in latent_sample': 'float16', 'out sample': 'float16' });
    assert.deepEqual(dtypes(model.textEncoder), TEXT_ENCODER_FP32);
    assert.ok(model.safetyChecker, 'the fp16 folder has a safety checker');
    assert.deepEqual(dtypes(model.safetyChecker.part), {
      'in clip_input': 'float16',
      'in images': 'float16',
      'out out_images': 'float16',
      'out has_nsfw_concepts': 'bool',
    });
  });

  // Every case, not only p1 and p2: they are cheap, and p4 (two images: the fp16 guidance batch is 4) and p3/p6
  // (ancestral noise, the CUDA generator) take other paths through the fp16 feeds.
  for (const id of caseIds()) {
    test(`case ${id} stays within half-precision rounding of diffusers' fp32 result`, async (t: TestContext) => {
      const run = await runReferenceCase(pipeline, id);
      const deviation = await measureAgainstReference(run);
      t.diagnostic(describeDeviation(`fp16 ${id} ${run.reference.scheduler}`, deviation));
      // FP16_BOUNDS checks each safety verdict too: the float16 safety checker must agree with the fp32 one's.
      assertWithinReference(run, deviation, FP16_BOUNDS, id);
    });
  }

  test('imagine-bot generate runs the fp16 folder and writes the reference image', async (t: TestContext) => {
    const work = await mkdtemp(join(tmpdir(), 'imagine-fp16-cli-'));
    try {
      const reference = loadCase('p1');
      const out = join(work, 'out');
      const result = await runCli([
        'generate', '--model', FP16, '--prompt', reference.prompt, '--seed', String(reference.seed),
        '--steps', String(reference.steps), '--cfg', String(reference.cfg), '--width', String(reference.width),
        '--height', String(reference.height), '--scheduler', 'euler', '--rng', 'cpu', '--provider', 'cpu', '--out', out,
      ]);
      cli = result;
      assert.equal(result.code, 0, `exit code; stderr:\n${result.stderr}`);
      const { data, info } = await sharp(await readFile(join(out, '0.png'))).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      assert.equal(info.width, reference.width);
      assert.equal(info.height, reference.height);
      const expected = await readReferencePng('p1', 0);
      const rgb = new Uint8Array(data);
      const withinOne = fractionWithin(rgb, expected.rgb, 1);
      const maxLevels = maxAbsDiff(rgb, expected.rgb);
      t.diagnostic(`CLI fp16 p1: ${(withinOne * 100).toFixed(3)}% of values within ±1 of diffusers, max ${maxLevels} levels`);
      assert.ok(withinOne >= FP16_BOUNDS.withinOne, `only ${(withinOne * 100).toFixed(3)}% of values within ±1`);
      assert.ok(maxLevels <= FP16_BOUNDS.maxLevels!, `a value is ${maxLevels} levels off`);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  // ONNX Runtime's CPU provider warns (in colour, on stderr) that it cannot constant-fold float16 Div nodes of the
  // safety checker; those lines mean nothing to a user, so providers.ts opens sessions at log severity 3.
  test('imagine-bot generate on the fp16 folder prints no ONNX Runtime warnings', () => {
    assert.ok(cli, 'the CLI test ran');
    const warnings = cli.stderr.split('\n').filter((line) => /onnxruntime/.test(line));
    assert.deepEqual(warnings, []);
  });
});

/**
 * A copy of `model` whose UNet gets every timestep truncated toward zero before it runs. The float UNet then computes
 * what diffusers' ONNX pipeline computes with an int64-timestep UNet (`np.array([t], dtype=np.int64)` truncates).
 */
function withTruncatedTimesteps(model: StableDiffusionModel): StableDiffusionModel {
  const session = model.unet.session;
  const truncating = new Proxy(session, {
    get(target, property) {
      if (property === 'run') {
        return (feeds: ort.InferenceSession.FeedsType, ...rest: unknown[]) => {
          const timestep = feeds['timestep'] as ort.Tensor;
          assert.equal(timestep.type, 'float32', 'tiny-sd takes a float timestep');
          const truncated = Float32Array.from(timestep.data as Float32Array, Math.trunc);
          const run = target.run.bind(target) as (...args: unknown[]) => Promise<ort.InferenceSession.ReturnType>;
          return run({ ...feeds, timestep: new ort.Tensor('float32', truncated, timestep.dims) }, ...rest);
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { ...model, unet: { ...model.unet, session: truncating } };
}

describe('int64-timestep export (SD 1.4 official, older optimum)', () => {
  let pipeline: StableDiffusionPipeline;
  before(async () => {
    pipeline = await loadPipeline(INT64_TIMESTEP, { provider: 'cpu' });
  });
  after(async () => {
    await pipeline?.model.release();
  });

  test('dtypes come from each session\'s metadata', () => {
    const { model } = pipeline;
    assert.equal(model.unet.inputs.get('timestep')?.dtype, 'int64');
    assert.deepEqual(dtypes(model.unet), {
      'in sample': 'float32',
      'in timestep': 'int64',
      'in encoder_hidden_states': 'float32',
      'out out_sample': 'float32',
    });
    assert.deepEqual(dtypes(model.vaeDecoder), { 'in latent_sample': 'float32', 'out sample': 'float32' });
    assert.deepEqual(dtypes(model.textEncoder), TEXT_ENCODER_FP32);
  });

  test('p2 (PNDM, whole-number timesteps) matches diffusers exactly', async (t: TestContext) => {
    const run = await runReferenceCase(pipeline, 'p2');
    assert.ok(run.result.timesteps.every(Number.isInteger), 'p2 has whole-number timesteps only');
    const deviation = await measureAgainstReference(run);
    t.diagnostic(describeDeviation('int64 p2 pndm', deviation));
    assertWithinReference(run, deviation, EXACT_BOUNDS, 'p2');
  });

  test('p1 (Euler, fractional timesteps) runs with each timestep truncated, as diffusers\' ONNX pipeline feeds it', async (t: TestContext) => {
    const run = await runReferenceCase(pipeline, 'p1');
    assert.ok(!run.result.timesteps.every(Number.isInteger), 'p1 has fractional timesteps');
    const deviation = await measureAgainstReference(run);
    t.diagnostic(describeDeviation('int64 p1 euler vs diffusers (float timesteps)', deviation));

    // The first timestep, 999, is whole, so the first step is exactly diffusers' float-timestep one.
    assert.equal(run.result.timesteps[0], 999);
    assert.ok(deviation.step1 <= EXACT_BOUNDS.latentRelative, `latents after step 1 differ by ${deviation.step1.toExponential(2)} of max`);
    // Later steps see 964 for 964.55, …: close to the float-timestep result, but measurably not it (the fp32 engine
    // is within ~1e-6 of diffusers; truncation moves the final latents by ~1e-3 of their magnitude).
    assert.ok(deviation.final > 1e-5, `final latents should differ from the float-timestep result (differ by ${deviation.final.toExponential(2)})`);
    assert.ok(deviation.final < 1e-2, `final latents should stay close to the float-timestep result (differ by ${deviation.final.toExponential(2)})`);
    assert.ok(deviation.images[0]!.withinOne >= 0.99, `image: only ${(deviation.images[0]!.withinOne * 100).toFixed(3)}% of values within ±1`);

    // The same run on tiny-sd's float UNet with timesteps truncated by hand is what the int64 UNet computed.
    const floatPipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false });
    try {
      const truncatedRun = await runReferenceCase(new StableDiffusionPipeline(withTruncatedTimesteps(floatPipeline.model)), 'p1');
      const relative = maxAbsDiff(run.result.latents, truncatedRun.result.latents) / maxAbs(truncatedRun.result.latents);
      const withinOne = fractionWithin(run.result.images[0]!.rgb, truncatedRun.result.images[0]!.rgb, 1);
      t.diagnostic(`int64 p1 vs float UNet fed trunc(t): final latents ${relative.toExponential(2)} of max, ${(withinOne * 100).toFixed(3)}% of values within ±1`);
      assert.ok(relative <= 1e-5, `int64 run differs from the truncated float run by ${relative.toExponential(2)} of max`);
      assert.equal(withinOne, 1);
    } finally {
      await floatPipeline.model.release();
    }
  });
});

describe('optimum layout: ORTStableDiffusionPipeline, model.onnx_data, tokenizer.json', () => {
  let pipeline: StableDiffusionPipeline;
  before(async () => {
    pipeline = await loadPipeline(OPTIMUM, { provider: 'cpu' });
  });
  after(async () => {
    await pipeline?.model.release();
  });

  test('the folder is laid out as optimum lays it out', () => {
    // What makes the variant a test at all: the engine cannot fall back on tiny-sd's file names here.
    assert.ok(existsSync(join(OPTIMUM, 'unet/model.onnx_data')));
    assert.ok(!existsSync(join(OPTIMUM, 'unet/weights.pb')));
    assert.ok(existsSync(join(OPTIMUM, 'tokenizer/tokenizer.json')));
    assert.ok(!existsSync(join(OPTIMUM, 'tokenizer/vocab.json')));
    assert.ok(!existsSync(join(OPTIMUM, 'tokenizer/merges.txt')));
    assert.equal(pipeline.model.modelIndex['_class_name'], 'ORTStableDiffusionPipeline');
  });

  test('loads every part, with no safety checker, and tokenizes from tokenizer.json', () => {
    const { model } = pipeline;
    assert.equal(model.safetyChecker, null);
    assert.deepEqual(dtypes(model.unet), {
      'in sample': 'float32',
      'in timestep': 'float32',
      'in encoder_hidden_states': 'float32',
      'out out_sample': 'float32',
    });
    assert.equal(model.vaeScalingFactor, 0.18215);
    // The seed article's token check.
    assert.deepEqual(Array.from(model.tokenizer.encode('dog in batman costume').subarray(0, 7)), [49406, 1929, 530, 7223, 7235, 49407, 49407]);
    for (const id of ['p1', 'p2']) {
      assertTokenIds(model.tokenizer, loadCase(id));
    }
  });

  for (const id of ['p1', 'p2']) {
    test(`case ${id} matches diffusers exactly`, async (t: TestContext) => {
      const run = await runReferenceCase(pipeline, id);
      const deviation = await measureAgainstReference(run);
      t.diagnostic(describeDeviation(`optimum ${id} ${run.reference.scheduler}`, deviation));
      assertWithinReference(run, deviation, { ...EXACT_BOUNDS, safetyVerdicts: false }, id);
      // No safety checker in the folder: no verdict, rather than a made-up "safe".
      assert.deepEqual(run.result.images.map((image) => image.nsfw), [null]);
    });
  }
});
