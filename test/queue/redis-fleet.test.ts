// The Redis backend end to end: a real redis-server, real worker processes (BullMQ Workers running the test
// generator), the bot-side RedisJobQueue in this process. Fair order across N workers, a SIGKILLed worker's job rerun
// elsewhere and delivered once, a SIGKILLed bot that loses nothing, a Redis restart (AOF on) that loses nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { JobNotActiveError, NotYourJobError } from '../../src/queue/errors.js';
import { Storage } from '../../src/queue/storage.js';
import { redisBackend, startRedis, type RedisServer } from './helpers/backends.js';
import { createRedisQueue, spawnWorker, type FleetWorker } from './helpers/fleet.js';
import { owner, params } from './helpers/queue-harness.js';

/** Runs `body` with a fresh redis-server and stops every worker and the server afterwards, whatever happened. */
async function withRedis(options: { appendOnly?: boolean }, body: (server: RedisServer, workers: FleetWorker[], storages: Storage[]) => Promise<void>): Promise<void> {
  const server = await startRedis(options);
  const workers: FleetWorker[] = [];
  const storages: Storage[] = [];
  try {
    await body(server, workers, storages);
  } finally {
    await Promise.allSettled(workers.map((w) => w.kill()));
    await Promise.allSettled(storages.map((s) => s.close()));
    await server.stop();
  }
}

function openStorage(server: RedisServer, storages: Storage[]): Storage {
  const storage = new Storage({ url: server.url });
  storages.push(storage);
  return storage;
}

describe('Redis backend with real worker processes', { skip: redisBackend.skip, timeout: 240_000 }, () => {
  test('2 workers finish 8 jobs from 2 guilds in the fair order, each delivered once', async () => {
    await withRedis({}, async (server, workers, storages) => {
      const h = createRedisQueue(openStorage(server, storages), server.url);
      await h.queue.start();
      try {
        // No worker is alive yet, so everything waits in the fair room and positions can be checked first.
        const plan: Array<[string, string, string]> = [
          ['A', 'alice', 'A1'], ['A', 'alice', 'A2'], ['A', 'amy', 'A3'], ['A', 'alice', 'A4'],
          ['A', 'amy', 'A5'], ['A', 'alice', 'A6'], ['B', 'bob', 'B1'], ['B', 'bob', 'B2'],
        ];
        const ids = new Map<string, string>();
        for (const [guild, user, prompt] of plan) ids.set(prompt, (await h.queue.enqueue({ owner: owner(guild, user), params: params(prompt, { steps: 10 }) })).job.id);
        // Round-robin guilds (A, B, A, B, …), inside A users (alice, amy, alice, …).
        const fairOrder = ['A1', 'B1', 'A3', 'B2', 'A2', 'A5', 'A4', 'A6'];
        const positions = await Promise.all(fairOrder.map(async (p) => (await h.queue.standing(ids.get(p) as string))?.position));
        assert.deepEqual(positions, [1, 2, 3, 4, 5, 6, 7, 8]);
        const snapshot = await h.queue.snapshot('bob');
        assert.equal(snapshot.queuedTotal, 8);
        assert.deepEqual(snapshot.user.map((s) => [s.job.params.prompt, s.position]), [['B1', 2], ['B2', 4]]);
        assert.deepEqual(await h.queue.activeCounts('A', 'amy'), { guild: 6, user: 2 });

        // Jobs of about a second each, so the second worker (its process starts in parallel) gets its share.
        workers.push(...(await Promise.all([spawnWorker(server.url, 100), spawnWorker(server.url, 100)])));
        await h.waitForCount('finished', 8);
        assert.deepEqual(h.startedOrder(), fairOrder);
        assert.deepEqual([...h.finishedOrder()].sort(), [...fairOrder].sort());
        const fleet = await h.queue.workers();
        assert.equal(fleet.length, 2);
        assert.equal(fleet.reduce((sum, w) => sum + w.jobsDone, 0), 8);
        assert.ok(fleet.every((w) => w.jobsDone > 0 && w.state !== 'gone' && w.model === 'test-generator'), JSON.stringify(fleet));
        for (const prompt of fairOrder) assert.equal((await h.queue.getJob(ids.get(prompt) as string))?.status, 'done');
      } finally {
        await h.queue.close();
      }
    });
  });

  test('a worker with worker.maxBatch 4 takes jobs while its running ones leave UNet rows free; each delivered once', async () => {
    await withRedis({}, async (server, workers, storages) => {
      const h = createRedisQueue(openStorage(server, storages), server.url);
      await h.queue.start();
      try {
        // Rows: two per image with guidance, one without. r2 + r1a + r1b fill the 4 rows; g2 waits for one to end.
        // No worker is alive yet, so all four wait in the fair room and the worker finds them there.
        const plan: Array<[string, number]> = [['r2', 7], ['r1a', 1], ['r1b', 1], ['g2', 7]];
        for (const [prompt, cfg] of plan) await h.queue.enqueue({ owner: owner(`G${prompt}`, 'u'), params: params(prompt, { steps: 15, cfg }) });
        workers.push(await spawnWorker(server.url, 100, 4));
        await h.waitForCount('finished', 4);
        const at = (event: 'started' | 'finished', prompt: string) => h.log.findIndex((e) => e.event === event && e.prompt === prompt);
        const firstEnd = Math.min(...plan.map(([prompt]) => at('finished', prompt)));
        const order = h.log.filter((e) => e.event === 'started' || e.event === 'finished').map((e) => `${e.event} ${e.prompt}`).join(', ');
        assert.ok(['r2', 'r1a', 'r1b'].every((prompt) => at('started', prompt) < firstEnd), `three jobs ran side by side: ${order}`);
        // (That g2 then waits for rows is not checked here: the bot sees a job's end later than the worker, so its
        // events cannot order g2's start against it.)
        assert.deepEqual(h.startedOrder(), ['r2', 'r1a', 'r1b', 'g2'], 'fair (arrival) order');
        assert.deepEqual([...h.finishedOrder()].sort(), ['g2', 'r1a', 'r1b', 'r2'], 'each delivered once');
        assert.equal((await h.queue.workers())[0]?.jobsDone, 4);
      } finally {
        await h.queue.close();
      }
    });
  });

  test('a worker SIGKILLed mid-job: the job reruns on the other worker and is delivered exactly once', async () => {
    await withRedis({}, async (server, workers, storages) => {
      const h = createRedisQueue(openStorage(server, storages), server.url);
      await h.queue.start();
      try {
        workers.push(await spawnWorker(server.url, 100), await spawnWorker(server.url, 100));
        const started = h.waitFor('started', 'victim');
        const finished = h.waitFor('finished', 'victim');
        const { job } = await h.queue.enqueue({ owner: owner('G', 'u1'), params: params('victim', { steps: 20 }) });
        await started;
        // Let it run a few steps, then kill whichever worker holds it.
        await sleep(500);
        const holder = (await h.queue.workers()).find((w) => w.jobId === job.id);
        assert.ok(holder, 'a worker reports the job as its current one');
        const victim = workers.find((w) => w.pid === holder.pid) as FleetWorker;
        const survivor = workers.find((w) => w !== victim) as FleetWorker;
        await victim.kill();
        const done = await finished;
        assert.equal(done.job.attempts, 2, 'the second start is the rerun');
        assert.equal(done.images.length, 1);
        // Time for a duplicate to show up, if there were one.
        await sleep(1500);
        assert.equal(h.log.filter((e) => e.event === 'finished').length, 1);
        assert.equal(h.log.filter((e) => e.event === 'failed').length, 0);
        const fleet = await h.queue.workers();
        assert.equal(fleet.find((w) => w.pid === survivor.pid)?.jobsDone, 1);
        assert.equal(fleet.find((w) => w.pid === victim.pid)?.state, 'gone', 'the killed worker stops heart-beating and reads as gone');
      } finally {
        await h.queue.close();
      }
    });
  });

  test('cancel: a waiting job leaves the fair room, a running one stops on its worker; only the owner or an admin may', async () => {
    await withRedis({}, async (server, workers, storages) => {
      const h = createRedisQueue(openStorage(server, storages), server.url);
      await h.queue.start();
      try {
        workers.push(await spawnWorker(server.url, 50));
        const started = h.waitFor('started', 'long');
        const long = await h.queue.enqueue({ owner: owner('G', 'u1'), params: params('long', { steps: 200 }) });
        const waiting = await h.queue.enqueue({ owner: owner('G', 'u2'), params: params('waiting') });
        await started;
        await assert.rejects(h.queue.cancel(waiting.job.id, { userId: 'u1', isAdmin: false }), NotYourJobError);
        const cancelledWaiting = await h.queue.cancel(waiting.job.id, { userId: 'u2', isAdmin: false });
        assert.equal(cancelledWaiting.status, 'cancelled');
        const cancelledLong = await h.queue.cancel(long.job.id, { userId: 'admin', isAdmin: true });
        assert.equal(cancelledLong.status, 'cancelled');
        assert.equal(cancelledLong.cancelledBy, 'admin');
        await assert.rejects(h.queue.cancel(long.job.id, { userId: 'u1', isAdmin: false }), JobNotActiveError);
        const cancels = h.log.filter((e) => e.event === 'cancelled').map((e) => e.prompt);
        assert.deepEqual(cancels, ['waiting', 'long']);
        // The worker is free again and the queue empty: a new job runs at once, and nothing was delivered twice.
        const next = h.waitFor('finished', 'after');
        await h.queue.enqueue({ owner: owner('G', 'u1'), params: params('after') });
        await next;
        assert.deepEqual(h.startedOrder(), ['long', 'after']);
        assert.equal(h.log.filter((e) => e.event === 'finished' || e.event === 'failed').length, 1);
      } finally {
        await h.queue.close();
      }
    });
  });

  test('two bot processes (shard sets) on one Redis: each follows and delivers only its own jobs; both list both shards', async () => {
    await withRedis({}, async (server, workers, storages) => {
      const bots = [createRedisQueue(openStorage(server, storages), server.url, 'shards-0-of-2'), createRedisQueue(openStorage(server, storages), server.url, 'shards-1-of-2')];
      await Promise.all(bots.map((b) => b.queue.start()));
      try {
        const prompts = [['S0a', 'S0b', 'S0c'], ['S1a', 'S1b', 'S1c']];
        const ids: string[] = [];
        for (const [i, bot] of bots.entries()) {
          for (const prompt of prompts[i]!) ids.push((await bot.queue.enqueue({ owner: owner(`G${i}`, 'u'), params: params(prompt, { steps: 4 }) })).job.id);
        }
        workers.push(...(await Promise.all([spawnWorker(server.url, 50), spawnWorker(server.url, 50)])));
        await Promise.all(bots.map((b) => b.waitForCount('finished', 3)));
        await sleep(500); // settle time for an event the other process should not have acted on
        for (const [i, bot] of bots.entries()) {
          const seen = new Set(bot.log.map((e) => e.prompt));
          assert.deepEqual([...seen].sort(), prompts[i], `bot ${i} saw events of its own jobs only`);
          assert.deepEqual([...bot.finishedOrder()].sort(), prompts[i]);
        }
        // One process recorded each start: a job that ran once was started once.
        for (const id of ids) assert.equal((await bots[0]!.queue.getJob(id))?.attempts, 1);

        // A report of an earlier layout (4 shards) is history once the current layout reports.
        await bots[0]!.queue.reportShards([{ id: 3, count: 4, guilds: 9, pingMs: 10, connected: true }]);
        await sleep(5);
        await bots[0]!.queue.reportShards([{ id: 0, count: 2, guilds: 3, pingMs: 41, connected: true }]);
        await bots[1]!.queue.reportShards([{ id: 1, count: 2, guilds: 2, pingMs: null, connected: true }]);
        const listed = await bots[1]!.queue.shards();
        assert.deepEqual(listed.map((s) => [s.id, s.guilds, s.pingMs, s.state, s.pid]), [[0, 3, 41, 'live', process.pid], [1, 2, null, 'live', process.pid]]);
        await bots[1]!.queue.close();
        assert.deepEqual((await bots[0]!.queue.shards()).map((s) => [s.id, s.state]), [[0, 'live'], [1, 'gone']], 'a closed process marks its shards gone');
      } finally {
        await Promise.all(bots.map((b) => b.queue.close()));
      }
    });
  });

  test('the bot SIGKILLed with 5 jobs queued: after a restart all 5 complete, each delivered once', async () => {
    await withRedis({}, async (server, workers, storages) => {
      workers.push(await spawnWorker(server.url, 50));
      await killBotWhenQueued(server.url);
      // A job or two ended while no bot listened; the restarted bot delivers those at start and the rest as they end.
      await sleep(500);
      const h = createRedisQueue(openStorage(server, storages), server.url);
      await h.queue.start();
      try {
        await h.waitForCount('finished', 5);
        assert.deepEqual([...h.finishedOrder()].sort(), ['R1', 'R2', 'R3', 'R4', 'R5']);
        await sleep(500);
        assert.equal(h.log.filter((e) => e.event === 'finished').length, 5);
      } finally {
        await h.queue.close();
      }
    });
  });

  test('redis-server restarted mid-queue (AOF on): nothing is lost, each job delivered once', async () => {
    await withRedis({ appendOnly: true }, async (server, workers, storages) => {
      const h = createRedisQueue(openStorage(server, storages), server.url);
      await h.queue.start();
      try {
        workers.push(await spawnWorker(server.url, 40), await spawnWorker(server.url, 40));
        const prompts = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6'];
        for (const [i, prompt] of prompts.entries()) await h.queue.enqueue({ owner: owner(i % 2 ? 'G' : 'H', 'u'), params: params(prompt, { steps: 8 }) });
        await h.waitForCount('finished', 1);
        await server.restart();
        await h.waitForCount('finished', prompts.length);
        assert.deepEqual([...h.finishedOrder()].sort(), prompts);
        await sleep(500);
        assert.equal(h.log.filter((e) => e.event === 'finished').length, prompts.length);
      } finally {
        await h.queue.close();
      }
    });
  });
});

/** A bot process (redis-bot-child.ts) that queues R1…R5, and is SIGKILLed once the first one has started. */
function killBotWhenQueued(url: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/queue/helpers/redis-bot-child.ts', url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bot child never became ready: ${stderr}`)), 60_000);
    child.stdout.on('data', (chunk: Buffer) => {
      if (!chunk.toString().includes('READY')) return;
      clearTimeout(timer);
      child.once('exit', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`bot child ended with ${signal}`))));
      child.kill('SIGKILL');
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== null) reject(new Error(`bot child exited with ${code}: ${stderr}`));
    });
  });
}
