// Child process for the SIGKILL test: queues three jobs on the storage named by argv[2] (a KEYV_URL or sqlite://
// path), lets the first one start (it never finishes), prints READY and waits to be killed.
import { Storage } from '../../../src/queue/storage.js';
import { StepGenerator } from './generator.js';
import { createQueue, owner, params } from './queue-harness.js';

const url = process.argv[2];
if (!url) throw new Error('usage: crash-child.ts <storage url>');
const generator = new StepGenerator();
generator.hangOn.add('K1');
const h = createQueue(new Storage({ url }), generator);
await h.queue.start();
const started = h.waitFor('started', 'K1');
for (const prompt of ['K1', 'K2', 'K3']) await h.queue.enqueue({ owner: owner('G', 'u1'), params: params(prompt) });
await started;
process.stdout.write('READY\n');
// Keep the process alive until the parent kills it.
setInterval(() => undefined, 60_000);
