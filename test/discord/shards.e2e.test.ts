/**
 * Gateway sharding end to end: two shards run by two real bot processes (`imagine-bot start --shards 0
 * --shard-count 2` and `--shards 1 …`), two real `imagine-bot worker` processes and a real redis-server, against the
 * emulator seeded with guilds on both shards. Each process serves its own shard's guilds and delivers the jobs it
 * queued; fairness holds across the guilds of both shards; a shard process SIGKILLed and started again delivers the
 * jobs queued through it and answers the buttons of its old messages.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SandboxInteraction } from '../../src/emulator/client.js';
import { BotSupervisor, DEFAULT_SEED, seedWithShards, shardOf, startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { redisBackend, startRedis, type RedisServer } from '../queue/helpers/backends.js';
import { buttonId, ephemeralText, hasPngs, mergeDeep, REPO_ROOT, startWorker, stopWorkers, TEST_CONFIG, waitUntil, type LogLine } from './harness.js';

const SHARD_COUNT = 2;

interface ShardProcess {
  supervisor: BotSupervisor;
  logs: LogLine[];
}

describe('2 shards as 2 bot processes, 2 workers, one redis-server', { skip: redisBackend.skip }, () => {
  let redis: RedisServer;
  let emulator: DiscordEmulator;
  let dataDir: string;
  const shards: ShardProcess[] = [];
  const workers: ChildProcess[] = [];
  /** A guild, a channel of it and two members, per shard id. */
  const world: Array<{ guild: string; channel: string }> = [];
  let bruno = '';
  let chloe = '';

  /** Starts (or restarts) shard `id`'s process; resolves once it is connected (and, for shard 0, has registered the commands). */
  async function startShard(id: number): Promise<void> {
    const shard = shards[id]!;
    const before = shard.logs.length;
    await shard.supervisor.start();
    const ready = (msg: string) => waitUntil(() => shard.logs.slice(before).find((line) => line.msg === msg), 60_000, `shard ${id}: ${msg}`);
    await ready('connected to Discord');
    if (id === 0) await ready('slash commands registered');
  }

  function imagine(shard: number, user: string, options: Record<string, unknown>): string {
    const { guild, channel } = world[shard]!;
    const sent = emulator.invokeCommand({ user_id: user, name: 'imagine', options, guild_id: guild, channel_id: channel });
    assert.ok(sent.delivered, `the interaction reached shard ${shard}'s session`);
    return sent.interaction_id;
  }

  function waitFor(id: string, predicate: (view: SandboxInteraction) => boolean, timeoutMs = 120_000): Promise<SandboxInteraction> {
    return emulator.waitForInteraction(id, (view) => predicate(view as unknown as SandboxInteraction), timeoutMs) as unknown as Promise<SandboxInteraction>;
  }

  const waitForResult = (id: string) => waitFor(id, (view) => hasPngs(view.original), 180_000);
  const acknowledged = (id: string) => waitFor(id, (view) => /Queued|Starting|Generating/.test(view.original?.content ?? ''));
  /** Log lines of one message, from both processes. */
  const logged = (msg: string, shard?: number) => shards.flatMap((s, i) => (shard === undefined || shard === i ? s.logs.filter((line) => line.msg === msg) : []));
  /** The queue's own "job queued" line (the handler logs one too), once per job. */
  const isQueuedLine = (line: LogLine) => line.msg === 'job queued' && line['module'] === 'queue';
  const queuedIn = (shard: number, after = 0) => shards[shard]!.logs.slice(after).filter(isQueuedLine).map((line) => String(line.jobId));

  before(async () => {
    redis = await startRedis();
    emulator = await startDiscordEmulator({ seed: seedWithShards(DEFAULT_SEED, SHARD_COUNT) });
    const state = emulator.stateView() as unknown as {
      guilds: { id: string; channels: { id: string; nsfw: boolean }[]; members: { user_id: string }[] }[];
      users: { id: string; username: string }[];
    };
    bruno = state.users.find((u) => u.username === 'bruno')!.id;
    chloe = state.users.find((u) => u.username === 'chloe')!.id;
    for (let id = 0; id < SHARD_COUNT; id += 1) {
      const guild = state.guilds.find((g) => shardOf(g.id, SHARD_COUNT) === id && [bruno, chloe].every((u) => g.members.some((m) => m.user_id === u)));
      assert.ok(guild, `the seeded world has a guild with bruno and chloe on shard ${id}`);
      world.push({ guild: guild.id, channel: guild.channels.find((c) => !c.nsfw)!.id });
    }
    dataDir = mkdtempSync(join(tmpdir(), 'imagine-shards-test-'));
    const configFile = join(dataDir, 'test-config.json');
    // Low timings (the workers read the same file): heartbeats and shard reports every 250 ms.
    writeFileSync(configFile, JSON.stringify(mergeDeep(TEST_CONFIG, { queue: { workerHeartbeatMs: 250, lostJobAfterMs: 1500 } })));
    const workerStarts = [startWorker(configFile, redis.url), startWorker(configFile, redis.url)];
    for (let id = 0; id < SHARD_COUNT; id += 1) {
      const supervisor = new BotSupervisor({
        command: process.execPath,
        // One process registers the commands; the other leaves them be.
        args: ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts'), 'start', '--shards', String(id), '--shard-count', String(SHARD_COUNT), ...(id > 0 ? ['--no-deploy'] : [])],
        cwd: REPO_ROOT,
        env: {
          ...emulator.botEnv(),
          IMAGINE_DATA_DIR: dataDir,
          IMAGINE_CONFIG: configFile,
          IMAGINE_QUEUE_BACKEND: 'redis',
          REDIS_URL: redis.url,
          KEYV_URL: undefined,
          LOG_LEVEL: 'debug',
        },
      });
      const shard: ShardProcess = { supervisor, logs: [] };
      supervisor.on('line', (line: string) => {
        if (!line.startsWith('{')) return;
        try {
          shard.logs.push(JSON.parse(line) as LogLine);
        } catch {
          // not a log line
        }
      });
      shards.push(shard);
    }
    workers.push(...(await Promise.all(workerStarts)));
    await Promise.all(shards.map((_, id) => startShard(id)));
  });

  after(async () => {
    await Promise.allSettled(shards.map((s) => s.supervisor.stop({ hard: false })));
    await stopWorkers(workers);
    await emulator?.stop();
    await redis?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  /** The result message of the first job in shard 0's guild: its buttons are clicked after that process restarts. */
  let oldMessageId = '';
  let oldRerollId = '';

  test('/imagine in a guild of each shard: each process serves, and delivers, its own guilds', async () => {
    assert.deepEqual(
      emulator.shardsView().map((s) => [s.id, s.connected]),
      [
        [0, true],
        [1, true],
      ],
    );
    const ids = [imagine(0, bruno, { prompt: 'shard zero fox', steps: 8, seed: '1' }), imagine(1, chloe, { prompt: 'shard one owl', steps: 8, seed: '2' })];
    const [zero] = await Promise.all(ids.map(waitForResult));
    oldMessageId = zero!.original!.id;
    oldRerollId = buttonId(zero!.original!, 'reroll');
    for (let shard = 0; shard < SHARD_COUNT; shard += 1) {
      const queued = shards[shard]!.logs.filter(isQueuedLine);
      assert.equal(queued.length, 1, `shard ${shard}'s process queued one job`);
      assert.equal(queued[0]!.guildId, world[shard]!.guild, `shard ${shard}'s process got its own guild's interaction`);
      const finished = logged('job finished', shard).map((line) => line.jobId);
      assert.deepEqual(finished, [queued[0]!.jobId], `shard ${shard}'s process delivered its own job, and only it`);
    }
  });

  test('/imagine-status lists both shards (id, servers, ping) from either process, and the workers', async () => {
    const invoked = emulator.invokeCommand({ user_id: bruno, name: 'imagine-status', guild_id: world[1]!.guild, channel_id: world[1]!.channel });
    const view = await waitFor(invoked.interaction_id, (v) => ephemeralText(v) !== null, 20_000);
    const status = ephemeralText(view)!;
    assert.match(status, /Shards: 2 of 2 live, 2 server\(s\)/);
    assert.match(status, /• shard 0 · 1 server\(s\) · ping (\d+ ms|—) · connected · \S+ \(pid \d+\)/);
    assert.match(status, /• shard 1 · 1 server\(s\) · ping (\d+ ms|—) · connected · \S+ \(pid \d+\)/);
    assert.match(status, /Workers: 2 live/);
  });

  test('fairness across shards: a guild on shard 1 is served next to a guild with many jobs on shard 0', async () => {
    const before = shards.map((s) => s.logs.length);
    const many = Array.from({ length: 8 }, (_, i) => imagine(0, bruno, { prompt: `busy guild ${i}`, steps: 24, size: '128x128' }));
    for (const id of many) await acknowledged(id);
    const one = imagine(1, chloe, { prompt: 'quiet guild', steps: 24, size: '128x128' });
    await Promise.all([...many, one].map(waitForResult));

    const busyIds = new Set(queuedIn(0, before[0]));
    assert.equal(busyIds.size, 8);
    const [quietId] = queuedIn(1, before[1]);
    const quietQueued = shards[1]!.logs.slice(before[1]).find((line) => isQueuedLine(line) && line.jobId === quietId)!;
    const quietStarted = shards[1]!.logs.slice(before[1]).find((line) => line.msg === 'job started' && line.jobId === quietId)!;
    const busyStarts = shards[0]!.logs.slice(before[0]).filter((line) => line.msg === 'job started' && busyIds.has(String(line.jobId)));
    const time = (line: LogLine) => Number(line['time']);
    const startedBeforeQuiet = busyStarts.filter((line) => time(line) < time(quietQueued)).length;
    // The test can fail: at the quiet guild's request, the busy guild still had jobs waiting that FIFO would run first.
    assert.ok(8 - startedBeforeQuiet - SHARD_COUNT >= 3, `the busy guild still had jobs waiting (${startedBeforeQuiet} had started)`);
    const overtaking = busyStarts.filter((line) => time(line) >= time(quietQueued) && time(line) < time(quietStarted)).length;
    // Round robin over guilds: at most the busy guild's turn that was already due, plus one promotion in flight.
    assert.ok(overtaking <= 2, `${overtaking} jobs of the busy guild started between the quiet guild's request and its start`);
    assert.ok(Number(quietQueued['position']) <= 2, `the quiet guild's job was told position ${String(quietQueued['position'])}`);
  });

  test('shard 0 SIGKILLed with jobs queued through it: back up, it delivers them once and answers its old buttons', async () => {
    const before = shards[0]!.logs.length;
    const queued = [0, 1, 2].map((i) => imagine(0, bruno, { prompt: `before the crash ${i}`, steps: 16, size: '128x128' }));
    for (const id of queued) await acknowledged(id);
    const jobIds = queuedIn(0, before);
    assert.equal(jobIds.length, 3);

    await shards[0]!.supervisor.stop({ hard: true });
    // The other shard keeps serving its guild meanwhile.
    assert.ok(hasPngs((await waitForResult(imagine(1, chloe, { prompt: 'while shard 0 is down', steps: 8 }))).original));
    assert.equal(emulator.shardsView().find((s) => s.id === 0)?.connected, false);
    // Shard 0's guild gets no answer while its process is down: Discord has no session to send the interaction to.
    assert.equal(emulator.invokeCommand({ user_id: bruno, name: 'imagine', options: { prompt: 'nobody hears' }, guild_id: world[0]!.guild, channel_id: world[0]!.channel }).delivered, false);

    const restartedAt = shards[0]!.logs.length;
    await startShard(0);
    for (const id of queued) assert.ok(hasPngs((await waitForResult(id)).original), 'a job queued before the crash was delivered after the restart');
    const click = emulator.click({ user_id: bruno, message_id: oldMessageId, custom_id: oldRerollId });
    assert.ok(click.delivered);
    const reroll = await waitForResult(click.interaction_id);
    assert.notEqual(reroll.original!.id, oldMessageId, 'the re-roll of a message from before the crash posted a new result');

    // Settle time for a duplicate, if there were one.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const jobId of jobIds) {
      assert.equal(logged('job finished').filter((line) => line.jobId === jobId).length, 1, `job ${jobId} delivered exactly once, by one process`);
    }
    assert.equal(logged('job finished', 1).filter((line) => jobIds.includes(String(line.jobId))).length, 0, 'shard 1 posted none of shard 0s jobs');
    // Nothing was queued twice: after the restart, shard 0 queued the re-roll and nothing else.
    const afterRestart = shards[0]!.logs.slice(restartedAt);
    assert.deepEqual(afterRestart.filter((line) => line.msg === 'acknowledged job queued again after a restart'), []);
    assert.equal(afterRestart.filter(isQueuedLine).length, 1, 'only the re-roll was queued after the restart');
  });
});
