// img2img starting images (src/queue/inputs.ts): stored by SHA-256 in files (local backend) or on the workers' Redis,
// and handed to the engine when the job runs: through a LocalJobQueue, and through a real worker process of the
// Redis backend. The test generator returns a starting image as its result, so the bytes that arrived can be compared.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { FileInputImageStore, InputImageGoneError, JobStore, LocalJobQueue, Storage, withInputImages, type JobRecord } from '../../src/queue/index.js';
import { redisBackend, startRedis } from './helpers/backends.js';
import { createRedisQueue, spawnWorker, type FleetWorker } from './helpers/fleet.js';
import { StepGenerator } from './helpers/generator.js';
import { owner, params } from './helpers/queue-harness.js';

function picture(shade: number): Promise<Buffer> {
  return sharp({ create: { width: 16, height: 16, channels: 3, background: { r: shade, g: 10, b: 200 } } }).png().toBuffer();
}

describe('FileInputImageStore', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'imagine-inputs-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('stores by SHA-256 once, reads back the same bytes, forgets expired ones and sweeps them', async () => {
    const store = new FileInputImageStore(dir, { ttlMs: 60_000 });
    const png = await picture(1);
    const ref = await store.put(png);
    assert.equal(ref, createHash('sha256').update(png).digest('hex'));
    assert.equal(await store.put(png), ref, 'the same bytes, the same reference');
    assert.deepEqual(readdirSync(dir), [`${ref}.png`]);
    assert.deepEqual(Buffer.from((await store.get(ref))!), png);
    assert.equal(await store.get('0'.repeat(64)), undefined, 'never stored');
    assert.equal(await store.get('../../etc/passwd'), undefined, 'not a reference');

    // Stored two minutes ago with a one-minute life: gone for readers and for the sweep.
    const old = new Date(Date.now() - 120_000);
    utimesSync(join(dir, `${ref}.png`), old, old);
    assert.equal(await store.get(ref), undefined);
    assert.equal(await store.sweep(), 1);
    assert.deepEqual(readdirSync(dir), []);
  });
});

describe('starting images reach the engine', () => {
  test('local backend: the job names its image; the generator gets its bytes; a missing image fails the job clearly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagine-inputs-queue-'));
    const storage = new Storage({ sqlitePath: join(dir, 'imagine.sqlite') });
    const inputs = new FileInputImageStore(join(dir, 'inputs'));
    const queue = new LocalJobQueue({ store: new JobStore(storage.namespace('jobs')), generator: withInputImages(new StepGenerator(1), inputs) });
    const ended = (prompt: string) =>
      new Promise<{ job: JobRecord; png?: Uint8Array }>((resolve) => {
        queue.on('finished', ({ job, images }) => void (job.params.prompt === prompt && resolve({ job, png: images[0]!.png })));
        queue.on('failed', ({ job }) => void (job.params.prompt === prompt && resolve({ job })));
      });
    try {
      await queue.start();
      const png = await picture(2);
      const ref = await inputs.put(png);
      const done = ended('from a picture');
      await queue.enqueue({ owner: owner('g', 'u'), params: params('from a picture', { steps: 2, init: { ref, strength: 0.4 } }) });
      assert.deepEqual(Buffer.from((await done).png!), png);

      const failed = ended('from nothing');
      await queue.enqueue({ owner: owner('g', 'u'), params: params('from nothing', { steps: 2, init: { ref: 'f'.repeat(64), strength: 0.4 } }) });
      const { job } = await failed;
      assert.equal(job.status, 'failed');
      assert.deepEqual(job.error, { code: 'input_image_gone', message: new InputImageGoneError().message });
    } finally {
      await queue.close();
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Redis backend: the bot stores the image on Redis; a worker process on its own reads it there', { skip: redisBackend.skip, timeout: 120_000 }, async () => {
    const server = await startRedis();
    const storage = new Storage({ url: server.url });
    const workers: FleetWorker[] = [];
    const h = createRedisQueue(storage, server.url);
    try {
      await h.queue.start();
      workers.push(await spawnWorker(server.url, 1));
      const png = await picture(3);
      const ref = await h.queue.inputImages.put(png);
      const finished = h.waitFor('finished', 'over redis');
      await h.queue.enqueue({ owner: owner('g', 'u'), params: params('over redis', { steps: 2, init: { ref, strength: 0.5 } }) });
      const { images } = await finished;
      assert.deepEqual(Buffer.from(images[0]!.png), png, 'the worker ran the job on the stored bytes');
    } finally {
      await h.queue.close();
      await Promise.allSettled(workers.map((w) => w.kill()));
      await storage.close();
      await server.stop();
    }
  });
});
