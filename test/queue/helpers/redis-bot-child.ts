// The bot side of the Redis backend in its own process, for the SIGKILL test: queues R1…R5 (steps long enough to
// outlive the process), prints READY once R1 has started on a worker, then waits to be killed.
// Usage: redis-bot-child.ts <redis url>
import { Storage } from '../../../src/queue/storage.js';
import { createRedisQueue } from './fleet.js';
import { owner, params } from './queue-harness.js';

const url = process.argv[2];
if (!url) throw new Error('usage: redis-bot-child.ts <redis url>');
const h = createRedisQueue(new Storage({ url }), url);
await h.queue.start();
const started = h.waitFor('started', 'R1');
for (const prompt of ['R1', 'R2', 'R3', 'R4', 'R5']) await h.queue.enqueue({ owner: owner('G', 'u1'), params: params(prompt, { steps: 10 }) });
await started;
process.stdout.write('READY\n');
// Kept alive until killed, but not beyond its parent (a test runner killed by a timeout).
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(1);
}, 1000);
