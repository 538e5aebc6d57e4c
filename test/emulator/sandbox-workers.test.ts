/**
 * `imagine-bot sandbox --workers 2`: the real bot on the Redis backend, two real `imagine-bot worker` processes with
 * the tiny model, a private redis-server the sandbox starts itself; the workers' control API kills one and the
 * sandbox respawns it, and /imagine through the emulator completes on the fleet.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { SandboxClient } from '../../src/emulator/index.js';
import { describeNeeding, missingProgram } from '../helpers/needs.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sandboxEntry = join(root, 'src', 'cli', 'sandbox.ts');

interface WorkerView {
  index: number;
  pid: number | null;
  alive: boolean;
  busy: boolean;
  jobs_done: number;
}

function runSandboxCli(args: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', sandboxEntry, 'sandbox', '--port', '0', ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function poll<T>(probe: () => Promise<T | null>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('sandbox --workers without --redis and without redis-server on PATH says how to get one, in one line', async () => {
  const emptyPath = mkdtempSync(join(tmpdir(), 'imagine-no-redis-'));
  try {
    const cli = runSandboxCli(['--workers', '1', '--no-deploy'], { PATH: emptyPath });
    assert.equal(await cli.exited, 1, cli.output());
    assert.match(cli.output(), /^error: sandbox --workers needs Redis: install redis-server \(sudo apt-get install -y redis-server/m);
    assert.doesNotMatch(cli.output(), /Imagine sandbox:/, 'nothing was started');
  } finally {
    rmSync(emptyPath, { recursive: true, force: true });
  }
});

test('sandbox --redis without --workers, and --workers with --no-bot, are refused in one line', async () => {
  const redisAlone = runSandboxCli(['--redis', 'redis://127.0.0.1:1']);
  assert.equal(await redisAlone.exited, 1, redisAlone.output());
  assert.match(redisAlone.output(), /^error: --redis is for --workers N/m);
  const workersAlone = runSandboxCli(['--workers', '2', '--no-bot']);
  assert.equal(await workersAlone.exited, 1, workersAlone.output());
  assert.match(workersAlone.output(), /^error: --workers runs jobs for the bot: it cannot go with --no-bot/m);
});

describeNeeding('imagine-bot sandbox --workers 2', missingProgram('redis-server', 'the sandbox --workers test is skipped', 'redis-server'), ({ test: it, after }) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'imagine-sandbox-workers-'));
  let cli: ReturnType<typeof runSandboxCli> | undefined;
  after(async () => {
    if (cli && cli.child.exitCode === null) {
      cli.child.kill('SIGINT');
      await Promise.race([cli.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
      if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('lists the workers, respawns a killed one with a new pid, and runs /imagine on the fleet', { timeout: 300_000 }, async () => {
    cli = runSandboxCli(['--workers', '2', '--data', dataDir, '--model', 'test/fixtures/tiny-sd']);
    const running = cli;
    const url = await poll(
      async () => {
        if (running.child.exitCode !== null) throw new Error(`the sandbox exited with ${String(running.child.exitCode)}:\n${running.output()}`);
        return /Open (http:\/\/127\.0\.0\.1:\d+)\/ to try it/.exec(running.output())?.[1] ?? null;
      },
      180_000,
      'the sandbox to be ready',
    );
    assert.match(running.output(), /Redis: redis:\/\/127\.0\.0\.1:\d+ \(a private redis-server, AOF on/);
    const getWorkers = async () => {
      const response = await fetch(`${url}/_sandbox/workers`);
      assert.equal(response.status, 200);
      return (await response.json()) as WorkerView[];
    };

    const before = await getWorkers();
    assert.deepEqual(before.map((w) => w.index), [0, 1]);
    for (const worker of before) {
      assert.equal(worker.alive, true);
      assert.equal(typeof worker.pid, 'number');
      assert.equal(worker.busy, false);
      assert.equal(worker.jobs_done, 0);
      // The pid is a live process (signal 0 only checks).
      assert.doesNotThrow(() => process.kill(worker.pid!, 0));
    }
    assert.notEqual(before[0]!.pid, before[1]!.pid);

    const unknown = await fetch(`${url}/_sandbox/workers/5/kill`, { method: 'POST' });
    assert.equal(unknown.status, 404);

    const killed = await fetch(`${url}/_sandbox/workers/0/kill`, { method: 'POST' });
    assert.equal(killed.status, 200);
    const killedBody = (await killed.json()) as { index: number; killed_pid: number };
    assert.equal(killedBody.killed_pid, before[0]!.pid);
    assert.throws(() => process.kill(before[0]!.pid!, 0), 'the old worker process is gone');
    const justAfter = await getWorkers();
    assert.equal(justAfter[0]!.alive, false, 'dead until the respawn delay has passed');
    assert.equal(justAfter[1]!.pid, before[1]!.pid, 'the other worker is untouched');

    const respawned = await poll(
      async () => {
        const worker = (await getWorkers())[0]!;
        return worker.alive && worker.pid !== null && worker.pid !== before[0]!.pid ? worker : null;
      },
      60_000,
      'worker 0 to be respawned',
    );
    assert.doesNotThrow(() => process.kill(respawned.pid!, 0));
    await poll(async () => (/\[worker 0\].*"worker started"/.test(running.output().split('worker 0 died')[1] ?? '') ? true : null), 60_000, 'the respawned worker to take jobs');

    // A job through the emulator finishes on the fleet, and a worker's heartbeat counts it.
    const sandbox = new SandboxClient(url);
    const state = await sandbox.state();
    const guild = state.guilds[0]!;
    const channel = guild.channels.find((c) => !c.nsfw)!;
    const user = state.users.find((u) => !u.admin)!;
    const { interaction_id } = await sandbox.invoke({ user_id: user.id, guild_id: guild.id, channel_id: channel.id, name: 'imagine', options: { prompt: 'a fleet of lighthouses', steps: 2 } });
    const done = await sandbox.waitForInteraction(interaction_id, (i) => (i.original?.attachments ?? []).some((a) => a.content_type === 'image/png'), { timeoutMs: 120_000 });
    assert.ok(done.original!.attachments.length >= 1);
    const counted = await poll(
      async () => {
        const workers = await getWorkers();
        return workers.reduce((sum, w) => sum + w.jobs_done, 0) === 1 ? workers : null;
      },
      30_000,
      'a heartbeat with jobs_done 1',
    );
    assert.ok(counted.every((w) => w.alive));

    running.child.kill('SIGINT');
    assert.equal(await running.exited, 0, running.output());
    assert.match(running.output(), /Ctrl-C stops the sandbox and the bot, the workers and Redis/);
  });
});
