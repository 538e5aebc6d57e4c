// The local backend's workers(): its one in-process pipeline worker, busy or idle, with its count of jobs done.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JobStore } from '../../src/queue/job-store.js';
import { LocalJobQueue } from '../../src/queue/local-queue.js';
import { sqliteBackend } from './helpers/backends.js';
import { StepGenerator } from './helpers/generator.js';
import { owner, params } from './helpers/queue-harness.js';

test('the local queue reports one in-process worker: idle, busy with its job, jobs done', async () => {
  const instance = await sqliteBackend.create();
  try {
    const generator = new StepGenerator();
    generator.hangOn.add('stuck');
    const queue = new LocalJobQueue({ store: new JobStore(instance.open().namespace('jobs')), generator, identity: { model: 'tiny-sd', provider: 'cpu' } });
    await queue.start();
    const [idle] = await queue.workers();
    assert.deepEqual({ ...idle, host: '', lastHeartbeat: 0 }, { id: 'local', host: '', pid: process.pid, model: 'tiny-sd', provider: 'cpu', device: null, state: 'idle', jobsDone: 0, lastHeartbeat: 0 });
    const first = new Promise<void>((resolve) => queue.on('finished', () => resolve()));
    await queue.enqueue({ owner: owner('G', 'u'), params: params('quick') });
    await first;
    const started = new Promise<void>((resolve) => queue.on('started', () => resolve()));
    const stuck = await queue.enqueue({ owner: owner('G', 'u'), params: params('stuck') });
    await started;
    const [busy] = await queue.workers();
    assert.equal(busy?.state, 'busy');
    assert.equal(busy?.jobId, stuck.job.id);
    assert.equal(busy?.jobsDone, 1);
    await queue.cancel(stuck.job.id, { userId: 'u', isAdmin: false });
    assert.equal((await queue.workers())[0]?.jobsDone, 2);
    await queue.close();
    assert.equal((await queue.workers())[0]?.state, 'gone');
  } finally {
    await instance.dispose();
  }
});
