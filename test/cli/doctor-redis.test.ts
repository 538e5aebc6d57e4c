// doctor with queue.backend "redis": a real redis-server, and a real RedisWorker (test generator) heart-beating.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runDoctor, type DoctorCheck } from '../../src/cli/doctor.js';
import { RedisWorker } from '../../src/queue/redis/worker.js';
import { redisBackend, startRedis } from '../queue/helpers/backends.js';
import { StepGenerator } from '../queue/helpers/generator.js';

const check = (checks: DoctorCheck[], name: string) => checks.find((c) => c.name === name);

test('doctor, backend redis: Redis reachable, no worker → fail (--quick: warn); a live worker → ok; the bot machine needs no model', { skip: redisBackend.skip }, async (t) => {
  const redis = await startRedis();
  const dir = mkdtempSync(join(tmpdir(), 'imagine-doctor-redis-'));
  t.after(async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { IMAGINE_QUEUE_BACKEND: 'redis', REDIS_URL: redis.url, IMAGINE_DATA_DIR: join(dir, 'data') };
  const before = await runDoctor({ env, cwd: dir, quick: true });
  assert.equal(check(before, 'Model'), undefined, 'no model check on a bot machine of the redis backend');
  assert.equal(check(before, 'Redis queue')?.status, 'ok');
  // --quick is the bot container's HEALTHCHECK: without workers the bot is still healthy, so only a warning.
  assert.equal(check(before, 'Workers')?.status, 'warn');
  assert.match(check(before, 'Workers')?.detail ?? '', /no worker alive/);
  const full = await runDoctor({ env, cwd: dir, quick: false });
  assert.equal(check(full, 'Workers')?.status, 'fail');

  const worker = new RedisWorker({ url: redis.url, generator: new StepGenerator(), identity: { model: 'tiny-sd', provider: 'cpu', device: 1 } });
  await worker.start();
  const during = await runDoctor({ env, cwd: dir, quick: true });
  assert.equal(check(during, 'Workers')?.status, 'ok');
  assert.match(check(during, 'Workers')?.detail ?? '', /^1 alive: \S+ pid \d+ \(tiny-sd on cpu, idle, 0 done\)$/);
  await worker.close();
  const after = await runDoctor({ env, cwd: dir, quick: false });
  assert.equal(check(after, 'Workers')?.status, 'fail');
  assert.match(check(after, 'Workers')?.detail ?? '', /no worker alive \(1 gone\)/);

  await redis.stop();
  const down = await runDoctor({ env, cwd: dir, quick: true });
  assert.equal(check(down, 'Redis queue')?.status, 'fail');
  assert.match(check(down, 'Redis queue')?.detail ?? '', /is not reachable/);
});
