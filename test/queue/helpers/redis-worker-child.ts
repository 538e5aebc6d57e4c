// A real worker process for the Redis fleet tests: a RedisWorker running the test StepGenerator, with BullMQ's
// stalled-job timings set low so a SIGKILLed sibling's job is found in about a second. Prints READY once it takes
// jobs; exits after a graceful close on SIGTERM.
// Usage: redis-worker-child.ts <redis url> <key prefix> <step ms> [worker.maxBatch]
import { RedisWorker } from '../../../src/queue/redis/worker.js';
import { StepGenerator } from './generator.js';
import { FLEET_TIMINGS } from './fleet.js';

const [url, prefix, stepMs, maxBatchRows] = process.argv.slice(2);
if (!url || !prefix) throw new Error('usage: redis-worker-child.ts <redis url> <key prefix> [step ms]');
const worker = new RedisWorker({
  url,
  prefix,
  generator: new StepGenerator(Number(stepMs ?? 20)),
  identity: { model: 'test-generator', provider: 'cpu', device: null },
  ...FLEET_TIMINGS,
  ...(maxBatchRows ? { maxBatchRows: Number(maxBatchRows) } : {}),
});
await worker.start();
process.stdout.write(`READY ${process.pid}\n`);
process.once('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
// A test runner that was killed (a timeout) leaves no worker behind: exit once the parent is gone.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(1);
}, 1000).unref();
