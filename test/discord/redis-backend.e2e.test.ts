/**
 * queue.backend "redis" end to end: the real bot process (which loads no model) and a real `imagine-bot worker`
 * process with the tiny model, sharing a real redis-server; /imagine through the emulator. The result, its
 * progress and previews cross from the worker to the bot through Redis; /imagine-status lists the worker.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { redisBackend, startRedis, type RedisServer } from '../queue/helpers/backends.js';
import { hasPngs, REPO_ROOT, Sandbox, TINY_MODEL } from './harness.js';

/** Starts `imagine-bot worker` with the bot's configuration file; resolves once it takes jobs. */
function startWorker(sb: Sandbox, redisUrl: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'worker', '--threads', '1'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      IMAGINE_MODEL: TINY_MODEL,
      IMAGINE_PROVIDER: 'cpu',
      IMAGINE_CONFIG: join(sb.dataDir, 'test-config.json'),
      REDIS_URL: redisUrl,
      KEYV_URL: '',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker never started: ${output}`)), 90_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"worker started"')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code}: ${output}`));
    });
  });
}

describe('/imagine on the Redis backend, with an imagine-bot worker process', { skip: redisBackend.skip }, () => {
  let redis: RedisServer;
  let sb: Sandbox;
  let worker: ChildProcess | undefined;

  before(async () => {
    redis = await startRedis();
    sb = await Sandbox.start({ env: { IMAGINE_QUEUE_BACKEND: 'redis', REDIS_URL: redis.url } });
    worker = await startWorker(sb, redis.url);
  });
  after(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((resolve) => worker?.once('exit', resolve));
      worker.kill('SIGTERM');
      await exited;
    }
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
    assert.ok(contents.some((c) => /step \d+\/80/.test(c)), `progress was shown: ${contents.join(' | ')}`);
    assert.ok(reply.history.some((h) => h.attachments.some((name) => name.startsWith('preview.'))), 'at least one preview edit');
  });

  test('/imagine-status lists the worker: host, model, provider, state, jobs done, heartbeat', async () => {
    const status = await sb.ephemeralAnswer(sb.invoke({ user_id: sb.people.bruno, name: 'imagine-status' }));
    assert.match(status, /Workers: 1 live \(0 busy\)/);
    assert.match(status, /• \S+ \(pid \d+\) · tiny-sd on cpu · idle · 1 job\(s\) done · heartbeat [\d.]+s ago/);
  });
});
