/**
 * `npm run bench:workers`: how the Redis backend scales with worker processes. A fixed set of jobs (tiny model,
 * JOBS × one 256² image, STEPS steps, euler) runs on 1 and then on 2 `imagine-bot worker` processes sharing a
 * throwaway redis-server; the time from the first enqueue to the last `finished` is printed for each, and the ratio
 * (target ≤ 0.65: two workers take at most 65 % of one worker's time).
 *
 * Each worker runs ONNX Runtime with ONE intra-op thread (`worker --threads 1`): on a 2-core machine two workers with
 * all-core thread pools would fight over the same cores, which measures the scheduler of the OS, not the queue.
 * Worker start-up (model load, warm-up) is not timed: the clock starts when every worker heart-beats.
 * Usage: npm run bench:workers [-- JOBS STEPS]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobStore } from '../src/queue/job-store.js';
import { RedisJobQueue } from '../src/queue/redis/redis-queue.js';
import { Storage } from '../src/queue/storage.js';
import { PROJECT_ROOT } from '../src/util/project.js';
import { startRedis } from '../test/queue/helpers/backends.js';

const JOBS = Number(process.argv[2] ?? 8);
const STEPS = Number(process.argv[3] ?? 20);
const SIZE = 256;
const TINY_MODEL = join(PROJECT_ROOT, 'test', 'fixtures', 'tiny-sd');

const dir = mkdtempSync(join(tmpdir(), 'imagine-bench-workers-'));
const configFile = join(dir, 'config.json');
// Warm-up in the benchmark's shape, previews off (the bench measures generation, not preview encoding).
writeFileSync(configFile, JSON.stringify({
  generation: { defaults: { size: `${SIZE}x${SIZE}`, steps: STEPS, scheduler: 'euler' }, limits: { sizes: [`${SIZE}x${SIZE}`] } },
  preview: { enabled: false },
  model: { safetyChecker: false },
}));

function startWorker(redisUrl: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli', 'main.ts'), 'worker', '--threads', '1'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, IMAGINE_MODEL: TINY_MODEL, IMAGINE_PROVIDER: 'cpu', IMAGINE_CONFIG: configFile, REDIS_URL: redisUrl, KEYV_URL: '', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"worker started"')) resolve(child);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${output}`)));
  });
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Seconds for JOBS jobs on `workers` worker processes, on a fresh Redis. */
async function run(workers: number): Promise<number> {
  const redis = await startRedis();
  const storage = new Storage({ url: redis.url });
  const queue = new RedisJobQueue({ url: redis.url, store: new JobStore(storage.namespace('jobs')), heartbeatMs: 500 });
  const children: ChildProcess[] = [];
  try {
    children.push(...(await Promise.all(Array.from({ length: workers }, () => startWorker(redis.url)))));
    await queue.start();
    let finished = 0;
    let failed = 0;
    const done = new Promise<void>((resolve) => {
      const end = () => (finished + failed === JOBS ? resolve() : undefined);
      queue.on('finished', () => void (finished++, end()));
      queue.on('failed', ({ error }) => void (failed++, console.error(`job failed: ${error.message}`), end()));
    });
    const started = performance.now();
    for (let i = 0; i < JOBS; i++) {
      await queue.enqueue({
        owner: { guildId: `g${i % 2}`, userId: `u${i % 4}`, channelId: 'c' },
        params: { prompt: `bench job ${i}`, negative: '', seed: String(1000 + i), steps: STEPS, cfg: 7, width: SIZE, height: SIZE, scheduler: 'euler', count: 1, rng: 'cpu' },
      });
    }
    await done;
    const seconds = (performance.now() - started) / 1000;
    const fleet = await queue.workers();
    console.log(`${workers} worker(s): ${JOBS} jobs in ${seconds.toFixed(2)} s (${(seconds / JOBS).toFixed(2)} s/job; jobs per worker: ${fleet.map((w) => w.jobsDone).join(', ')}${failed ? `; ${failed} failed` : ''})`);
    return seconds;
  } finally {
    await Promise.allSettled(children.map(stopWorker));
    await queue.close().catch(() => undefined);
    await storage.close().catch(() => undefined);
    await redis.stop();
  }
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, Node ${process.version}`);
console.log(`jobs: ${JOBS} × 1 image ${SIZE}×${SIZE}, ${STEPS} steps, euler, tiny model, ORT intra-op threads = 1 per worker`);
try {
  const one = await run(1);
  const two = await run(2);
  const ratio = two / one;
  console.log(`2 workers / 1 worker: ${ratio.toFixed(2)} (target ≤ 0.65: ${ratio <= 0.65 ? 'met' : 'NOT met'})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
