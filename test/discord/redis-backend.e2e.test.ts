/**
 * queue.backend "redis" end to end: the real bot process (which loads no model) and a real `imagine-bot worker`
 * process with the tiny model, sharing a real redis-server; /imagine through the emulator. The result, its
 * progress and previews cross from the worker to the bot through Redis; /imagine-status lists the worker.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { redisBackend, startRedis, type RedisServer } from '../queue/helpers/backends.js';
import { fetchFleet } from '../../src/queue/redis/dispatcher.js';
import { DEFAULT_KEY_PREFIX } from '../../src/queue/redis/protocol.js';
import { hasPngs, Sandbox, startWorker, stopWorkers } from './harness.js';

describe('/imagine on the Redis backend, with an imagine-bot worker process', { skip: redisBackend.skip }, () => {
  let redis: RedisServer;
  let sb: Sandbox;
  const workers: ChildProcess[] = [];

  before(async () => {
    redis = await startRedis();
    // Low timings (the workers read the same file): a killed worker's job is found in a few seconds.
    sb = await Sandbox.start({ config: { queue: { workerHeartbeatMs: 250, lostJobAfterMs: 1500 } }, env: { IMAGINE_QUEUE_BACKEND: 'redis', REDIS_URL: redis.url } });
    workers.push(await startWorker(join(sb.dataDir, 'test-config.json'), redis.url));
  });
  after(async () => {
    await stopWorkers(workers);
    await sb?.stop();
    await redis?.stop();
  });

  test('the bot loads no model: it queues on Redis', () => {
    assert.equal(sb.logs.filter((line) => line.module === 'engine').length, 0, 'no engine log lines in the bot');
    assert.ok(sb.logs.some((line) => /queue backend redis/.test(line.msg)));
    assert.ok(sb.logs.some((line) => line.msg === 'storage opened' && line.storage === 'redis'), 'settings and jobs live in the same Redis');
  });

  test('a job runs on the worker; progress, previews and the PNGs reach Discord through the bot', async () => {
    const id = sb.imagine(sb.people.bruno, { prompt: 'a lighthouse at dusk', seed: '1234', steps: 40, size: '128x128', count: 2 });
    const view = await sb.waitForResult(id, 120_000);
    const reply = view.original!;
    assert.ok(hasPngs(reply));
    assert.equal(reply.attachments.filter((a) => a.content_type === 'image/png').length, 2);
    const contents = reply.history.map((h) => h.content);
    assert.ok(contents.some((c) => /step \d+\/40/.test(c)), `progress of the one batched run was shown: ${contents.join(' | ')}`);
    assert.ok(reply.history.some((h) => h.attachments.some((name) => name.startsWith('preview.'))), 'at least one preview edit');
  });

  test('/imagine-status lists the worker: host, model, provider, state, jobs done, heartbeat', async () => {
    const status = await sb.ephemeralAnswer(sb.invoke({ user_id: sb.people.bruno, name: 'imagine-status' }));
    assert.match(status, /Workers: 1 live \(0 busy\)/);
    assert.match(status, /• \S+ \(pid \d+\) · tiny-sd on cpu · idle · 1 job\(s\) done · heartbeat [\d.]+s ago/);
  });

  test('a worker SIGKILLed mid-job: the job completes on the other worker, one result message', async () => {
    workers.push(await startWorker(join(sb.dataDir, 'test-config.json'), redis.url));
    const id = sb.imagine(sb.people.chloe, { prompt: 'survives a dead worker', seed: '77', steps: 50, size: '128x128', count: 4 });
    await sb.waitForInteraction(id, (v) => /Generating/.test(v.original?.content ?? ''), 120_000);
    const started = sb.logs.find((line) => line.msg === 'job started' && line.attempt === 1 && !sb.logs.some((l) => l.msg === 'job finished' && l.jobId === line.jobId));
    assert.ok(started, 'the job started');
    const fleet = await fetchFleet(redis.url, { prefix: DEFAULT_KEY_PREFIX, goneAfterMs: 750 });
    const holder = fleet.find((w) => w.jobId === started.jobId);
    assert.ok(holder, `a worker reports the job: ${JSON.stringify(fleet)}`);
    const victim = workers.find((w) => w.pid === holder.pid)!;
    const killed = new Promise((resolve) => victim.once('exit', resolve));
    victim.kill('SIGKILL');
    await killed;
    const view = await sb.waitForResult(id, 180_000);
    assert.equal(view.original!.attachments.filter((a) => a.content_type === 'image/png').length, 4);
    // Settle time for a duplicate, if there were one.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const about = (msg: string) => sb.logs.filter((line) => line.msg === msg && line.jobId === started.jobId);
    assert.equal(about('job finished').length, 1, 'delivered exactly once');
    assert.deepEqual(about('job started').map((line) => line.attempt), [1, 2], 'rerun as a second attempt');
  });

  test('the bot SIGKILLed with jobs queued: after a restart every job completes', async () => {
    const { bruno, chloe } = sb.people;
    const ids = ['one', 'two', 'three', 'four', 'five'].map((word, i) => sb.imagine(i % 2 ? chloe : bruno, { prompt: `queued ${word}`, steps: 30, size: '128x128', count: 2 }));
    for (const id of ids) await sb.waitForInteraction(id, (v) => /Queued|Starting|Generating/.test(v.original?.content ?? ''), 120_000);
    await sb.restartBot(true);
    for (const id of ids) assert.ok(hasPngs((await sb.waitForResult(id, 180_000)).original), 'completed after the restart');
  });
});
