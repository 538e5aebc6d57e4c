/**
 * The pipeline's device loop (guidance and the scheduler step as an ONNX graph on the UNet's execution provider, fed
 * by `Scheduler.linearStep`), forced onto the CPU provider with `deviceLoop: 'always'`: there is no GPU here, so
 * this checks the arithmetic and the plumbing, not that anything stays on a GPU. It must reproduce diffusers'
 * reference cases within pipeline.test.ts's bounds and agree closely with the JS loop.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CancelledError } from '../../src/diffusion/errors.js';
import { loadPipeline } from '../../src/diffusion/load.js';
import { StableDiffusionPipeline as StableDiffusionPipelineClass, type DeviceLoopMode, type GenerateOptions, type StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { createNoiseGenerator } from '../../src/diffusion/rng/index.js';
import { createScheduler } from '../../src/diffusion/schedulers/index.js';
import { supportsLinearStep, type LinearStep, type SchedulerConfig, type SchedulerName } from '../../src/diffusion/schedulers/types.js';
import {
  assertWithinReference,
  describeDeviation,
  EXACT_BOUNDS,
  FIXTURES,
  FP16_BOUNDS,
  loadCase,
  maxAbs,
  maxAbsDiff,
  measureAgainstReference,
  readF32,
  requestFor,
  runReferenceCase,
  TINY_MODEL,
  type ReferenceCase,
  type ReferenceRun,
} from '../helpers/reference.js';

const FP16 = join(FIXTURES, 'variants', 'fp16');

/**
 * Device loop vs JS loop on the same model: both compute the same step in float32, only the order of operations
 * differs (the graph folds guidance into the step's coefficients: b(1−g)·uncond + b·g·cond), so they agree to float32
 * rounding carried through the steps (measured on p1, p3, p4, p6: 4e-7 … 5.3e-7 of the max magnitude); a wrong
 * coefficient or a misplaced noise draw moves latents by whole units.
 */
const LOOPS_RELATIVE = 1e-5;
/**
 * fp16: the next UNet input is rounded to half from slightly differently rounded float32 values, and a value that
 * lands on the other side of a half rounding boundary moves the UNet's output by a half ulp; measured 2.5e-4 (p1) and
 * 3.4e-4 (p3) of the max magnitude.
 */
const FP16_LOOPS_RELATIVE = 2e-3;

/** A reference case through the given loop, keeping the latents after step 1 (see runReferenceCase). */
function run(pipeline: StableDiffusionPipeline, reference: ReferenceCase, deviceLoop: DeviceLoopMode, extra: GenerateOptions = {}): Promise<ReferenceRun> {
  return runReferenceCase(pipeline, reference, { deviceLoop, ...extra });
}

describe('device loop on the CPU provider reproduces diffusers and the JS loop', () => {
  let pipeline: StableDiffusionPipeline;
  before(async () => {
    pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu' });
  });
  after(async () => {
    await pipeline.release();
    await pipeline.model.release();
  });

  for (const id of ['p1', 'p3', 'p4', 'p6']) {
    test(`case ${id}`, async (t) => {
      const reference = loadCase(id);
      const js = await run(pipeline, reference, 'auto');
      assert.equal(js.result.loop, 'js', "'auto' on the CPU provider runs the JS loop");
      const device = await run(pipeline, reference, 'always');
      assert.equal(device.result.loop, 'device');
      assert.equal(device.result.timings.nodeStepMsPerStep.length, reference.timesteps.length);
      assert.ok(device.result.timings.stepGraphMs > 0, 'the step graph ran');
      assert.equal(js.result.timings.stepGraphMs, 0);

      const deviation = await measureAgainstReference(device);
      t.diagnostic(describeDeviation(`${id} device loop vs diffusers`, deviation));
      assertWithinReference(device, deviation, EXACT_BOUNDS, id);

      const loopsDiff = maxAbsDiff(device.result.latents, js.result.latents);
      const loopsStep1 = maxAbsDiff(device.step1, js.step1);
      t.diagnostic(
        `${id} ${reference.scheduler}/${reference.rng}: device vs JS loop max diff ${loopsDiff.toExponential(2)} final, ` +
          `${loopsStep1.toExponential(2)} after step 1 (max magnitude ${maxAbs(js.result.latents).toFixed(3)}); ` +
          `vs diffusers ${deviation.finalDiff.toExponential(2)}`,
      );
      assert.ok(loopsDiff <= LOOPS_RELATIVE * maxAbs(js.result.latents), `device and JS loops differ by ${loopsDiff}`);
      assert.ok(loopsStep1 <= LOOPS_RELATIVE * maxAbs(js.step1), `device and JS loops differ after step 1 by ${loopsStep1}`);
    });
  }

  test("'always' with PNDM (multistep PLMS, no linear step) falls back to the JS loop", async () => {
    const reference = loadCase('p2');
    assert.equal(reference.scheduler, 'pndm');
    const forced = await run(pipeline, reference, 'always');
    assert.equal(forced.result.loop, 'js');
    const plain = await run(pipeline, reference, 'never');
    assert.deepEqual(forced.result.latents, plain.result.latents);
    assertWithinReference(forced, await measureAgainstReference(forced), EXACT_BOUNDS, 'p2');
  });

  test('without guidance (cfg 1) the device loop agrees with the JS loop', async (t) => {
    const reference = { ...loadCase('p3'), cfg: 1 };
    const js = await run(pipeline, reference, 'never');
    const device = await run(pipeline, reference, 'always');
    assert.equal(device.result.loop, 'device');
    const diff = maxAbsDiff(device.result.latents, js.result.latents);
    t.diagnostic(`euler_a cfg 1: device vs JS loop max diff ${diff.toExponential(2)} (max magnitude ${maxAbs(js.result.latents).toFixed(3)})`);
    assert.ok(diff <= LOOPS_RELATIVE * maxAbs(js.result.latents), `loops differ by ${diff}`);
    // And guidance matters: the cfg-1 image is not the cfg-5 one.
    const guided = readF32('p3', 'latents_final.f32');
    assert.ok(maxAbsDiff(device.result.latents, guided) > 10 * EXACT_BOUNDS.latentRelative * maxAbs(guided));
  });

  test('latents are read back only for the steps wantsLatents picks; onStep sees every step', async () => {
    const reference = loadCase('p1');
    for (const mode of ['always', 'never'] as const) {
      const previewed: number[] = [];
      const stepped: number[] = [];
      let previewAt10: Float32Array | undefined;
      const result = await pipeline.generate(requestFor(reference), {
        deviceLoop: mode,
        wantsLatents: (step) => step % 10 === 0,
        onProgress: ({ step, latents, totalSteps, shape }) => {
          previewed.push(step);
          assert.equal(totalSteps, reference.timesteps.length);
          assert.deepEqual(shape, reference.latent_shape);
          if (step === 10) previewAt10 = Float32Array.from(latents);
        },
        onStep: ({ step }) => stepped.push(step),
      });
      assert.equal(result.loop, mode === 'always' ? 'device' : 'js');
      assert.deepEqual(previewed, [10, 20, 30], mode);
      assert.deepEqual(stepped, Array.from({ length: 30 }, (_, i) => i + 1), mode);
      assert.ok(previewAt10 && maxAbsDiff(previewAt10, result.latents) > 0.1, `${mode}: the step-10 preview is not the final latents`);
      if (mode === 'always') assert.ok(result.timings.readBackMs > 0);
    }
  });

  test('an abort between steps stops the device loop with CancelledError', async () => {
    const reference = loadCase('p1');
    const controller = new AbortController();
    await assert.rejects(
      pipeline.generate(requestFor(reference), {
        deviceLoop: 'always',
        signal: controller.signal,
        onStep: ({ step }) => {
          if (step === 3) controller.abort();
        },
      }),
      CancelledError,
    );
    // The pipeline is still usable afterwards.
    const again = await run(pipeline, reference, 'always');
    assertWithinReference(again, await measureAgainstReference(again), EXACT_BOUNDS, 'p1 after the abort');
  });
});

describe('device loop on the fp16 variant (float16 UNet, fp32 text encoder)', () => {
  let pipeline: StableDiffusionPipeline;
  before(async () => {
    pipeline = await loadPipeline(FP16, { provider: 'cpu', deviceLoop: 'always' });
  });
  after(async () => {
    await pipeline.release();
    await pipeline.model.release();
  });

  for (const id of ['p1', 'p3']) {
    test(`case ${id}`, async (t) => {
      const reference = loadCase(id);
      const device = await run(pipeline, reference, 'always');
      assert.equal(device.result.loop, 'device');
      const js = await run(pipeline, reference, 'never');
      assert.equal(js.result.loop, 'js');
      // model-variants.test.ts's bounds for the fp16 variant against diffusers' fp32 run.
      const deviation = await measureAgainstReference(device);
      t.diagnostic(describeDeviation(`fp16 ${id} device loop vs diffusers`, deviation));
      assertWithinReference(device, deviation, FP16_BOUNDS, `fp16 ${id}`);
      const loopsDiff = maxAbsDiff(device.result.latents, js.result.latents);
      t.diagnostic(
        `fp16 ${id}: device vs JS loop max diff ${loopsDiff.toExponential(2)} (max magnitude ${maxAbs(js.result.latents).toFixed(3)}); ` +
          `vs diffusers ${deviation.final.toExponential(2)} of max`,
      );
      assert.ok(loopsDiff <= FP16_LOOPS_RELATIVE * maxAbs(js.result.latents), `device and JS loops differ by ${loopsDiff}`);
    });
  }
});

/** Applies linear coefficients in JS, as the step graph does on the device. */
function applyLinear(step: LinearStep, modelOutput: Float32Array, sample: Float32Array): Float32Array {
  return sample.map((x, i) => step.latents * x + step.prediction * modelOutput[i]! + step.noise * (step.noiseValues?.[i] ?? 0));
}

describe('Scheduler.linearStep gives the same step as step()', () => {
  const config: SchedulerConfig = {
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    num_train_timesteps: 1000,
    set_alpha_to_one: false,
    steps_offset: 1,
    clip_sample: false,
  };
  const count = 64;
  const cases: Array<[SchedulerName, string]> = [
    ['euler', 'epsilon'],
    ['euler', 'v_prediction'],
    ['euler', 'sample'],
    ['euler_a', 'epsilon'],
    ['euler_a', 'v_prediction'],
    ['ddim', 'epsilon'],
    ['ddim', 'v_prediction'],
    ['ddim', 'sample'],
  ];
  for (const [name, prediction] of cases) {
    test(`${name} (${prediction}), every step of a 12-step schedule`, () => {
      const viaStep = createScheduler(name, { ...config, prediction_type: prediction });
      const viaLinear = createScheduler(name, { ...config, prediction_type: prediction });
      assert.ok(supportsLinearStep(viaLinear));
      viaStep.setTimesteps(12);
      viaLinear.setTimesteps(12);
      const stepGenerator = createNoiseGenerator('cpu', 7n);
      const linearGenerator = createNoiseGenerator('cpu', 7n);
      let sampleA: Float32Array = stepGenerator.randn(count).map((x) => x * viaStep.initNoiseSigma);
      let sampleB: Float32Array = linearGenerator.randn(count).map((x) => x * viaLinear.initNoiseSigma);
      let inputB: Float32Array = viaLinear.scaleModelInput(sampleB, viaLinear.timesteps[0]!).slice();
      for (const [index, t] of viaStep.timesteps.entries()) {
        const inputA = viaStep.scaleModelInput(sampleA, t);
        assert.ok(maxAbsDiff(inputA, inputB) <= 1e-6 * Math.max(1, maxAbs(inputA)), `step ${index}: UNet inputs differ`);
        // A stand-in model output that depends on the input, as a UNet's does.
        const output = inputA.map((x, i) => Math.sin(x + i) * 0.9);
        sampleA = viaStep.step(output, t, sampleA, stepGenerator).slice();
        const linear = viaLinear.linearStep!(t, count, linearGenerator);
        assert.equal(linear.noiseValues !== null, name === 'euler_a');
        sampleB = applyLinear(linear, output, sampleB);
        inputB = sampleB.map((x) => x * linear.nextInputScale);
        assert.ok(maxAbsDiff(sampleA, sampleB) <= 1e-5 * Math.max(1, maxAbs(sampleA)), `step ${index}: latents differ by ${maxAbsDiff(sampleA, sampleB)}`);
      }
      // The noise stream advanced identically: the next draws are equal.
      assert.deepEqual(stepGenerator.randn(4), linearGenerator.randn(4));
    });
  }

  test('DDIM with clip_sample cannot step linearly; PNDM, DPM++ 2M and LMS have no linear step', () => {
    assert.equal(supportsLinearStep(createScheduler('ddim', { ...config, clip_sample: true })), false);
    assert.throws(() => createScheduler('ddim', { ...config, clip_sample: true }).linearStep!(981, 4));
    for (const name of ['pndm', 'dpmpp_2m', 'lms'] as const) assert.equal(supportsLinearStep(createScheduler(name, config)), false, name);
  });
});

describe("'auto' falls back to the JS loop when the device loop fails", () => {
  test('a pipeline told its provider is webgpu, on this machine: the step graph cannot start there, the image is still right', async (t) => {
    // The model's sessions are on the CPU; the pipeline believes the provider is webgpu, so `auto` picks the device
    // loop and opens its helper sessions on WebGPU. Without a usable GPU (as in CI) they fail to start, which must
    // cost the job nothing: the generation starts over on the JS loop and later ones stay there.
    const loaded = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false });
    const lines: string[] = [];
    const pipeline = new StableDiffusionPipelineClass(loaded.model, { provider: 'webgpu', log: (line) => lines.push(line) });
    try {
      const reference = loadCase('p1');
      const first = await run(pipeline, reference, 'auto');
      // No safety checker here (safetyChecker: false), so no verdict to compare.
      assertWithinReference(first, await measureAgainstReference(first), { ...EXACT_BOUNDS, safetyVerdicts: false }, 'p1');
      t.diagnostic(`loop ${first.result.loop}; ${lines.join(' | ') || 'no log line'}`);
      if (first.result.loop === 'js') {
        assert.ok(pipeline.deviceLoopFailure, 'the failure is kept');
        assert.equal(lines.length, 1);
        assert.match(lines[0]!, /^device loop failed on webgpu \(.+\); using the JS loop from now on$/);
        const second = await run(pipeline, reference, 'auto');
        assert.equal(second.result.loop, 'js');
        assert.equal(lines.length, 1, 'no second attempt, no second log line');
        assert.deepEqual(second.result.latents, first.result.latents);
      }
    } finally {
      await pipeline.release();
      await loaded.model.release();
    }
  });

  test("a callback's own error is not taken for a device-loop failure", async () => {
    const pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', safetyChecker: false, deviceLoop: 'always' });
    try {
      const boom = new Error('listener broke');
      await assert.rejects(
        pipeline.generate(requestFor(loadCase('p1')), {
          onStep: ({ step }) => {
            if (step === 2) throw boom;
          },
        }),
        (error) => error === boom,
      );
      assert.equal(pipeline.deviceLoopFailure, null);
    } finally {
      await pipeline.release();
      await pipeline.model.release();
    }
  });
});
