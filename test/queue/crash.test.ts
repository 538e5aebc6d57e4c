// A real crash: a child process queues three jobs (the first one running) and is killed with SIGKILL; a new queue
// on the same SQLite file / Redis server runs all three, in their order.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describeNeeding } from '../helpers/needs.js';
import { backends } from './helpers/backends.js';
import { StepGenerator } from './helpers/generator.js';
import { createQueue } from './helpers/queue-harness.js';

function runChildUntilReady(url: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/queue/helpers/crash-child.ts', url], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child never became ready: ${stderr}`));
    }, 60_000);
    child.stdout.on('data', (chunk: Buffer) => {
      if (!chunk.toString().includes('READY')) return;
      clearTimeout(timer);
      child.once('exit', (code, signal) => {
        assert.equal(signal, 'SIGKILL');
        resolve();
      });
      child.kill('SIGKILL');
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== null) reject(new Error(`child exited with ${code}: ${stderr}`));
    });
  });
}

for (const backend of backends) {
  describeNeeding(`SIGKILL with jobs queued, on ${backend.name}`, backend.skip, ({ test }) => {
    test('all 3 jobs run after the restart, in their original order', async () => {
      const instance = await backend.create();
      try {
        await runChildUntilReady(instance.url);
        const generator = new StepGenerator();
        const h = createQueue(instance.open(), generator);
        const attempts = new Map<string, number>();
        h.queue.on('finished', ({ job }) => void attempts.set(job.params.prompt, job.attempts));
        await h.queue.start();
        const restored = h.log.filter((e) => e.event === 'queued');
        assert.deepEqual(restored.map((e) => e.prompt), ['K1', 'K2', 'K3']);
        await h.queue.idle();
        assert.deepEqual(generator.finished, ['K1', 'K2', 'K3']);
        assert.deepEqual(h.startedOrder(), ['K1', 'K2', 'K3']);
        // K1 had started in the killed process: this is its second attempt.
        assert.deepEqual([...attempts], [['K1', 2], ['K2', 1], ['K3', 1]]);
        await h.queue.close();
      } finally {
        await instance.dispose();
      }
    });
  });
}
