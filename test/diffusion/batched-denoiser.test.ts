/**
 * Continuous batching (batched-denoiser.ts) on the tiny model with real ORT sessions: jobs at different steps, with
 * different schedulers, CFGs (guidance on and off), step counts and seeds share one UNet batch, join and leave it
 * mid-way, and each still equals the same job run alone (latents within the fp32 reference tolerance, PNG ±1 on
 * ≥ 99.9 % of values); cancelling one job leaves the others' results unchanged; admission keeps arrival order, the
 * row limit and the compatibility key.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { batchCompatibilityKey, rowsOf } from '../../src/diffusion/batched-denoiser.js';
import { CancelledError } from '../../src/diffusion/errors.js';
import { loadPipeline } from '../../src/diffusion/load.js';
import { StableDiffusionPipeline, type GenerateOptions, type GenerationRequest, type GenerationResult } from '../../src/diffusion/pipeline.js';
import type { TextConditioning } from '../../src/diffusion/text-conditioning.js';
import { EXACT_BOUNDS, FIXTURES, FP16_BOUNDS, fractionWithin, maxAbs, maxAbsDiff, tinyPipelineForSuite } from '../helpers/reference.js';

const job = (overrides: Partial<GenerationRequest> & Pick<GenerationRequest, 'seed' | 'scheduler'>): GenerationRequest => ({
  prompt: 'a lighthouse on a cliff',
  negativePrompt: 'blurry',
  steps: 6,
  cfg: 7,
  width: 64,
  height: 64,
  ...overrides,
});

/** Holds every image of `batched` to the same job run alone, with the fp32 engine's reference bounds (or fp16's). */
function assertSameAsAlone(batched: GenerationResult, alone: GenerationResult, label: string, bounds = EXACT_BOUNDS): void {
  const tolerance = bounds.latentRelative * maxAbs(alone.latents);
  const diff = maxAbsDiff(batched.latents, alone.latents);
  assert.ok(diff <= tolerance, `${label}: latents differ by ${diff} (tolerance ${tolerance})`);
  assert.equal(batched.images.length, alone.images.length);
  for (const [index, image] of alone.images.entries()) {
    const within = fractionWithin(batched.images[index]!.rgb, image.rgb, 1);
    assert.ok(within >= bounds.withinOne, `${label} image ${index}: only ${(within * 100).toFixed(3)}% of values within ±1`);
  }
}

/** A log of (job, step) in the order the steps finished, to check who shared which UNet run. */
function stepLog(): { events: string[]; options(name: string, extra?: GenerateOptions): GenerateOptions } {
  const events: string[] = [];
  return {
    events,
    options: (name, extra = {}) => ({
      ...extra,
      onStep: (info) => {
        events.push(`${name}${info.step}`);
        extra.onStep?.(info);
      },
    }),
  };
}

describe('continuous batching reproduces each job run alone (tiny model, CPU)', () => {
  const pipeline = tinyPipelineForSuite();
  const batchedPipeline = (maxBatchRows: number) => new StableDiffusionPipeline(pipeline().model, { maxBatchRows });

  test('rows at different steps, schedulers, CFGs and step counts, joining and leaving mid-way', async (t) => {
    const a = job({ seed: [11n, 12n], scheduler: 'euler_a', steps: 16, cfg: 7 }); // 4 rows, ancestral noise per image
    const b = job({ seed: [21n], scheduler: 'dpmpp_2m', steps: 4, cfg: 1, prompt: 'a red bicycle' }); // 1 row, no guidance
    const c = job({ seed: [31n], scheduler: 'pndm', steps: 5, cfg: 4, negativePrompt: '' }); // 2 rows, multistep state
    const d = job({ seed: [41n], scheduler: 'dpmpp_2m_sde', steps: 3, cfg: 1.5, karras: true }); // 2 rows, SDE noise
    const batched = batchedPipeline(9);
    const log = stepLog();
    const started: Promise<GenerationResult>[] = [];
    // b joins after a's 2nd step and leaves before a ends; c joins after a's 3rd; d after b's last.
    const runA = batched.generate(
      a,
      log.options('a', {
        onStep: ({ step }) => {
          if (step === 2) started.push(batched.generate(b, log.options('b', { onStep: (info) => void (info.step === info.totalSteps && started.push(batched.generate(d, log.options('d')))) })));
          if (step === 3) started.push(batched.generate(c, log.options('c')));
        },
      }),
    );
    const resultA = await runA;
    const [resultB, resultC] = await Promise.all([started[0]!, started[1]!]);
    // d was started by b's last step, so it exists once b has finished.
    const resultD = await started[2]!;

    // They really shared UNet runs: b's first step ran with a's 3rd or 4th (text encoding takes a step or so), and
    // fewer UNet runs than steps in all.
    t.diagnostic(`steps in order: ${log.events.join(' ')}`);
    assert.ok(log.events.indexOf('b1') < log.events.indexOf('a16'), 'b joined while a ran');
    assert.ok(log.events.indexOf('b4') < log.events.indexOf('a16'), 'b left while a ran');
    assert.ok(log.events.indexOf('c1') < log.events.indexOf('a16'), 'c joined while a ran');
    const totalSteps = 16 + 4 + 6 + 3; // PNDM runs steps + 1 UNet calls
    assert.ok(batched.batcher!.unetRuns < totalSteps, `${batched.batcher!.unetRuns} UNet runs for ${totalSteps} steps`);
    assert.equal(batched.batcher!.rowSteps, 16 * 4 + 4 * 1 + 6 * 2 + 3 * 2, 'every row of every step ran once');

    const alone = batchedPipeline(1);
    assert.equal(alone.batcher, null);
    for (const [label, request, result] of [
      ['a euler_a cfg 7', a, resultA],
      ['b dpmpp_2m cfg 1', b, resultB],
      ['c pndm cfg 4', c, resultC],
      ['d dpmpp_2m_sde karras cfg 1.5', d, resultD],
    ] as const) {
      const single = await alone.generate(request);
      assertSameAsAlone(result!, single, label);
      t.diagnostic(`${label}: max latent diff ${maxAbsDiff(result!.latents, single.latents).toExponential(2)}`);
    }
  });

  test('cancelling one job removes its rows and leaves the others\' results unchanged', async () => {
    const a = job({ seed: [5n], scheduler: 'euler', steps: 16, cfg: 7 });
    const b = job({ seed: [6n, 7n], scheduler: 'euler_a', steps: 6, cfg: 5 });
    const c = job({ seed: [8n], scheduler: 'ddim', steps: 6, cfg: 1 });
    const batched = batchedPipeline(8);
    const cancel = new AbortController();
    const log = stepLog();
    const others: Promise<GenerationResult>[] = [];
    // b and c join a's running batch; b is cancelled after its 2nd step.
    const runs = [
      batched.generate(
        a,
        log.options('a', {
          onStep: ({ step }) => {
            if (step !== 1) return;
            const cancelled = batched.generate(b, log.options('b', { signal: cancel.signal, onStep: (info) => void (info.step === 2 && cancel.abort()) }));
            cancelled.catch(() => undefined); // settled below, after a ends
            others.push(cancelled);
            others.push(batched.generate(c, log.options('c')));
          },
        }),
      ),
    ];
    await runs[0]!.catch(() => undefined);
    runs.push(...others);
    const [settledA, settledB, settledC] = await Promise.allSettled(runs);
    assert.ok(settledB?.status === 'rejected');
    assert.ok(settledB.reason instanceof CancelledError, String(settledB.reason));
    assert.ok(!log.events.includes('b3'), 'b ran no step after its cancel');
    assert.ok(log.events.indexOf('a16') > log.events.indexOf('b2') && log.events.indexOf('c6') > log.events.indexOf('b2'), 'a and c went on after b was cancelled');
    assert.ok(settledA?.status === 'fulfilled' && settledC?.status === 'fulfilled');
    const alone = batchedPipeline(1);
    assertSameAsAlone(settledA.value, await alone.generate(a), 'a');
    assertSameAsAlone(settledC.value, await alone.generate(c), 'c');
    assert.equal(batched.batcher!.load.liveRows, 0);
  });

  test('admission keeps arrival order: a job that does not fit (rows or size) holds back the ones behind it', async () => {
    const batched = batchedPipeline(4);
    const log = stepLog();
    const big = job({ seed: [1n, 2n], scheduler: 'euler', steps: 3, cfg: 7 }); // 4 rows: the whole batch
    const small = job({ seed: [3n], scheduler: 'euler', steps: 3, cfg: 1 }); // 1 row: must wait for big
    const other = job({ seed: [4n], scheduler: 'euler', steps: 3, cfg: 1, width: 80 }); // another size
    const after = job({ seed: [5n], scheduler: 'euler', steps: 3, cfg: 1 }); // fits with small, but arrived after other
    const huge = job({ seed: [6n, 7n, 8n], scheduler: 'euler', steps: 2, cfg: 7 }); // 6 rows > 4: runs alone
    await Promise.all([
      batched.generate(big, log.options('big')),
      batched.generate(small, log.options('small')),
      batched.generate(other, log.options('other')),
      batched.generate(after, log.options('after')),
      batched.generate(huge, log.options('huge')),
    ]);
    const at = (event: string) => log.events.indexOf(event);
    assert.ok(at('small1') > at('big3'), 'small waited for rows');
    assert.ok(at('other1') > at('small3'), 'another size waits for the batch to drain');
    assert.ok(at('after1') > at('other3'), 'a job that would fit does not overtake the one ahead of it');
    assert.ok(at('huge1') > at('after3'), 'a job larger than the batch runs when the batch is empty');
  });
});

for (const [variant, bounds] of [['fp16', FP16_BOUNDS], ['int64-timestep', EXACT_BOUNDS]] as const) {
  describe(`continuous batching on the ${variant} export (feeds in the dtypes its metadata declares)`, () => {
    let pipeline: StableDiffusionPipeline | undefined;
    before(async () => {
      pipeline = await loadPipeline(join(FIXTURES, 'variants', variant), { provider: 'cpu', safetyChecker: false });
    });
    after(async () => {
      await pipeline?.release();
      await pipeline?.model.release();
    });

    test('two jobs at different steps (one timestep per row) each equal the job run alone', async () => {
      const a = job({ seed: [51n, 52n], scheduler: 'euler_a', steps: 10, cfg: 7 });
      const b = job({ seed: [53n], scheduler: 'dpmpp_2m', steps: 4, cfg: 1 });
      const batched = new StableDiffusionPipeline(pipeline!.model, { maxBatchRows: 8 });
      const log = stepLog();
      let joined: Promise<GenerationResult> | undefined;
      const resultA = await batched.generate(a, log.options('a', { onStep: ({ step }) => void (step === 2 && (joined = batched.generate(b, log.options('b')))) }));
      const resultB = await joined!;
      assert.ok(log.events.indexOf('b1') < log.events.indexOf('a10'), `b ran beside a: ${log.events.join(' ')}`);
      assertSameAsAlone(resultA, await pipeline!.generate(a), `${variant} a`, bounds);
      assertSameAsAlone(resultB, await pipeline!.generate(b), `${variant} b`, bounds);
    });
  });
}

describe('batch bookkeeping', () => {
  const text = (sequence: number, rows = 2): TextConditioning => ({
    embeddings: new Float32Array(rows * sequence * 32),
    dims: [rows, sequence, 32],
    promptTokens: { tokenCount: 0, capacity: 75, droppedTokenCount: 0, droppedText: '' },
    textualInversions: [],
  });

  test('the compatibility key separates latent sizes, prompt lengths, extra row inputs and adapter sets', () => {
    const base = { shape: [1, 4, 8, 8] as const, text: text(77) };
    const key = batchCompatibilityKey(base);
    assert.equal(batchCompatibilityKey({ ...base, shape: [3, 4, 8, 8], text: text(77, 6) }), key, 'image count and rows may differ');
    assert.notEqual(batchCompatibilityKey({ ...base, shape: [1, 4, 8, 9] }), key);
    assert.notEqual(batchCompatibilityKey({ ...base, text: text(154) }), key);
    assert.notEqual(batchCompatibilityKey({ ...base, rowInputs: { timestep_cond: new Float32Array(2 * 256) } }), key);
    assert.notEqual(batchCompatibilityKey({ ...base, adapters: ['lora:abc@0.8'] }), key);
    assert.equal(batchCompatibilityKey({ ...base, adapters: ['b', 'a'] }), batchCompatibilityKey({ ...base, adapters: ['a', 'b'] }));
  });

  test('rows per job: two per image with guidance, one without', () => {
    assert.equal(rowsOf(4, 7), 8);
    assert.equal(rowsOf(4, 1), 4);
    assert.equal(rowsOf(1, 1.01), 2);
  });
});

describe('continuous batching of an LCM UNet (timestep_cond per row)', () => {
  let lcm: StableDiffusionPipeline | undefined;
  before(async () => {
    lcm = await loadPipeline(join(FIXTURES, 'tiny-lcm'), { provider: 'cpu', safetyChecker: false });
  });
  after(async () => {
    await lcm?.release();
  });

  test('two LCM jobs with different CFGs share the batch and each equals itself run alone', async () => {
    // The guidance embedding differs per job (cfg − 1), so a row fed the other job's embedding would change its image.
    const a = job({ seed: [51n, 52n], scheduler: 'lcm', steps: 4, cfg: 1.5 });
    const b = job({ seed: [61n], scheduler: 'lcm', steps: 4, cfg: 8, prompt: 'a red bicycle' });
    const batched = new StableDiffusionPipeline(lcm!.model, { maxBatchRows: 8 });
    const log = stepLog();
    let runB: Promise<GenerationResult> | undefined;
    const resultA = await batched.generate(a, log.options('a', { onStep: ({ step }) => void (step === 1 && (runB = batched.generate(b, log.options('b')))) }));
    const resultB = await runB!;
    assert.ok(log.events.indexOf('b1') < log.events.indexOf('a4'), `b ran beside a: ${log.events.join(' ')}`);
    assertSameAsAlone(resultA, await lcm!.generate(a), 'lcm a');
    assertSameAsAlone(resultB, await lcm!.generate(b), 'lcm b');
  });
});
