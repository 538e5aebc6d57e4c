/**
 * The local queue with continuous batching (worker.maxBatch) over the real engine on the tiny model: the next job in
 * fair order starts while its UNet rows fit beside the running jobs' (two per image with guidance, one without),
 * waits while they do not, the engine runs the overlapping jobs in one UNet batch, and every job's images are the
 * ones it makes alone; cancelling a running job leaves the others' images unchanged.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { PipelineImageGenerator } from '../../src/app/engine-adapter.js';
import { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import { JobStore } from '../../src/queue/job-store.js';
import { LocalJobQueue, toGenerationRequest } from '../../src/queue/local-queue.js';
import type { GeneratedImage, JobParams } from '../../src/queue/types.js';
import { fractionWithin, tinyPipelineForSuite } from '../helpers/reference.js';
import { sqliteBackend } from './helpers/backends.js';
import { owner, params } from './helpers/queue-harness.js';

const rgbOf = async (png: Uint8Array) => new Uint8Array(await sharp(Buffer.from(png)).raw().toBuffer());

describe('local queue with worker.maxBatch 6 over the tiny engine', () => {
  const pipeline = tinyPipelineForSuite();

  test('jobs start while their rows fit, share the batch, and each makes the images it makes alone; a cancel spares the others', async () => {
    const instance = await sqliteBackend.create();
    const batched = new StableDiffusionPipeline(pipeline().model, { maxBatchRows: 6 });
    const queue = new LocalJobQueue({
      store: new JobStore(instance.open().namespace('jobs')),
      generator: new PipelineImageGenerator(batched, { safetyCheck: false }),
      maxBatchRows: 6,
    });
    const events: string[] = [];
    const images = new Map<string, readonly GeneratedImage[]>();
    queue.on('started', ({ job }) => void events.push(`start ${job.params.prompt}`));
    queue.on('finished', ({ job, images: made }) => {
      events.push(`end ${job.params.prompt}`);
      images.set(job.params.prompt, made);
    });
    queue.on('cancelled', ({ job }) => void events.push(`cancel ${job.params.prompt}`));
    const jobs: Record<string, JobParams> = {
      a: params('a', { width: 64, height: 64, count: 2, cfg: 7, steps: 16, seed: '11' }), // 4 rows
      b: params('b', { width: 64, height: 64, count: 1, cfg: 1, steps: 4, seed: '21', scheduler: 'dpmpp_2m' }), // 1 row
      c: params('c', { width: 64, height: 64, count: 1, cfg: 5, steps: 3, seed: '31', scheduler: 'euler_a' }), // 2 rows: 4 + 1 + 2 > 6
      d: params('d', { width: 64, height: 64, count: 1, cfg: 1, steps: 30, seed: '41' }), // cancelled while running
    };
    try {
      await queue.start();
      const ids: Record<string, string> = {};
      // One guild each, so the fair order is the arrival order.
      for (const [name, job] of Object.entries(jobs)) ids[name] = (await queue.enqueue({ owner: owner(`G${name}`, `u${name}`), params: job })).job.id;
      const dStarted = new Promise<void>((resolve) => queue.on('progress', ({ job, progress }) => void (job.params.prompt === 'd' && progress.step === 2 && resolve())));
      await dStarted;
      await queue.cancel(ids['d']!, { userId: 'ud', isAdmin: false });
      await queue.idle();

      const at = (event: string) => events.indexOf(event);
      assert.ok(at('start b') < at('end a'), `b ran beside a: ${events.join(', ')}`);
      assert.ok(at('start c') > at('end b') && at('start c') < at('end a'), `c waited for b's row, not for a: ${events.join(', ')}`);
      assert.ok(at('cancel d') >= 0 && at('end a') >= 0 && at('end c') >= 0);
      assert.ok(batched.batcher!.rowSteps > batched.batcher!.unetRuns, 'UNet runs were shared');

      const alone = new PipelineImageGenerator(pipeline(), { safetyCheck: false });
      for (const name of ['a', 'b', 'c']) {
        const job = jobs[name]!;
        const single = await alone.generate(toGenerationRequest({ params: job }), { signal: new AbortController().signal });
        const made = images.get(name)!;
        assert.equal(made.length, single.images.length);
        for (const [index, image] of single.images.entries()) {
          const within = fractionWithin(await rgbOf(made[index]!.png), await rgbOf(image.png), 1);
          assert.ok(within >= 0.999, `${name} image ${index}: ${(within * 100).toFixed(3)}% within ±1`);
        }
      }
    } finally {
      await queue.close();
      await batched.release();
      await instance.dispose();
    }
  });
});
