/**
 * `npm run bench:responsiveness [-- --backend local|redis] [--isolation process|inline] [--niceness N]
 *   [--interactions 50] [--interval-ms 200]`
 *
 * Is the bot still answering Discord while the engine works? On the emulator, with the real bot (`imagine-bot start`
 * as a child process, the tiny model on the CPU), this starts the heaviest job the sandbox offers (512×512, 4 images,
 * 50 steps: `imagine-bot sandbox`'s sizes for the tiny model and the default limits), waits until it is generating,
 * then sends N `/imagine` interactions M ms apart and prints:
 *   - how many were acknowledged within Discord's 3 seconds (target: all),
 *   - the acknowledgement time p50 / p99 (target p99 ≤ 250 ms),
 *   - the bot thread's event-loop delay p99 over the burst (perf_hooks.monitorEventLoopDelay in the bot, read with
 *     SIGUSR2; target ≤ 50 ms).
 * `--isolation inline` runs the engine on the bot's thread as before issue 12, for the before/after comparison;
 * `--niceness N` sets engine.niceness (the engine process's nice value). `--backend redis` runs the bot with
 * queue.backend "redis" on a private redis-server and one `imagine-bot worker` process (all CPUs, like the local
 * engine) that runs the heavy job; the bot's event-loop delay is measured the same way.
 * Printed numbers, not a test: timings on a shared machine vary.
 */
import { availableParallelism, cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { LOOP_DELAY_MESSAGE, LOOP_DELAY_SIGNAL } from '../src/app/loop-delay.js';
import { imagineBotCommand } from '../src/cli/sandbox.js';
import { SandboxWorkers } from '../src/cli/sandbox-workers.js';
import { startRedis } from '../src/util/redis-server.js';
import { hasPngs, Sandbox, TINY_MODEL, waitUntil, type LogLine } from '../test/discord/harness.js';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'local' },
    isolation: { type: 'string', default: 'process' },
    niceness: { type: 'string', default: '0' },
    interactions: { type: 'string', default: '50' },
    'interval-ms': { type: 'string', default: '200' },
  },
});

interface BenchBackend {
  /** Merged into the bot's configuration file. */
  config: object;
  /** Added to the bot's environment. */
  env: Record<string, string>;
  /** Called once the bot is up (its configuration file exists): starts what runs the jobs outside the bot. */
  afterBot(sb: Sandbox): Promise<void>;
  stop(): Promise<void>;
}

/** The queue backends the bench can run the bot with: each gives the configuration and environment that select it. */
const BACKENDS: Record<string, () => Promise<BenchBackend>> = {
  local: async () => ({ config: {}, env: {}, afterBot: async () => undefined, stop: async () => undefined }),
  redis: async () => {
    // The same private redis-server (AOF on) and worker processes as `imagine-bot sandbox --workers 1`.
    const redis = await startRedis({ appendOnly: true });
    let workers: SandboxWorkers | null = null;
    return {
      config: { queue: { backend: 'redis' } },
      env: { REDIS_URL: redis.url },
      async afterBot(sb) {
        workers = await SandboxWorkers.start({
          count: 1,
          command: imagineBotCommand('worker'),
          env: {
            IMAGINE_MODEL: TINY_MODEL,
            IMAGINE_PROVIDER: 'cpu',
            IMAGINE_CONFIG: join(sb.dataDir, 'test-config.json'),
            IMAGINE_QUEUE_BACKEND: 'redis',
            REDIS_URL: redis.url,
            KEYV_URL: '',
            LOG_LEVEL: 'info',
          },
          redisUrl: redis.url,
          output: () => undefined,
        });
      },
      async stop() {
        await workers?.stop();
        await redis.stop();
      },
    };
  },
};

const HEAVY_JOB = { prompt: 'the heaviest job the sandbox offers', size: '512x512', count: 4, steps: 50 };
const ACK_DEADLINE_MS = 3_000;

const backendName = args.backend;
const openBackend = BACKENDS[backendName];
if (!openBackend) {
  console.error(`backend "${backendName}" is not available (available: ${Object.keys(BACKENDS).join(', ')})`);
  process.exit(2);
}
if (args.isolation !== 'process' && args.isolation !== 'inline') {
  console.error('--isolation must be process or inline');
  process.exit(2);
}
const count = Number(args.interactions);
const intervalMs = Number(args['interval-ms']);

const backend = await openBackend();
const sb = await Sandbox.start({
  config: {
    ...backend.config,
    engine: { isolation: args.isolation, niceness: Number(args.niceness) },
    generation: { limits: { sizes: ['64x64', '128x128', '256x256', '512x512'], maxSteps: 50, maxCount: 4 } },
    queue: { maxPerUser: 100, maxPerGuild: 200, maxTotal: 500 },
    // Previews as the bot's defaults make them (the tests' harness makes them smaller and more often).
    preview: { minIntervalMs: 1500, size: 256 },
  },
  // The bot as it runs in production: info level, not the tests' debug.
  env: { ...backend.env, LOG_LEVEL: 'info' },
});

/** Asks the bot for its event-loop delay since the last request, and waits for the answer in its log. */
async function loopDelay(): Promise<LogLine> {
  const after = sb.logs.length;
  process.kill(sb.bot.pid!, LOOP_DELAY_SIGNAL);
  // With the engine on the bot's thread the answer waits for the current step: allow for that.
  return sb.waitForLog((line) => line.msg === LOOP_DELAY_MESSAGE, { after, timeoutMs: 120_000 });
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}
const ms = (value: number) => (Number.isFinite(value) ? `${Math.round(value)} ms` : 'never');

try {
  await backend.afterBot(sb);
  const { bruno, chloe, admin } = sb.people;
  const heavy = sb.imagine(admin, HEAVY_JOB);
  await sb.waitForInteraction(heavy, (view) => /Generating/.test(view.original?.content ?? ''), 300_000);
  await loopDelay(); // starts the window

  const users = [bruno, chloe];
  const sent: string[] = [];
  const started = Date.now();
  for (let i = 0; i < count; i++) {
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + i * intervalMs - Date.now())));
    sent.push(sb.imagine(users[i % users.length]!, { prompt: `interaction ${i + 1} while the engine works` }));
  }
  // Every interaction gets its full 3 seconds.
  await waitUntil(() => (sent.every((id) => sb.interaction(id).acked) ? true : null), ACK_DEADLINE_MS + 500, 'acks').catch(() => undefined);
  const delay = await loopDelay();
  const heavyView = sb.interaction(heavy);
  const heavyStillRunning = !hasPngs(heavyView.original);

  const ackTimes = sent.map((id) => {
    const view = sb.interaction(id) as unknown as { ack_ms: number | null };
    return view.ack_ms ?? Number.POSITIVE_INFINITY;
  });
  const sorted = [...ackTimes].sort((a, b) => a - b);
  const withinDeadline = ackTimes.filter((t) => t <= ACK_DEADLINE_MS).length;
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, Node ${process.version}`);
  const engineWhere =
    backendName === 'redis' ? 'in one `imagine-bot worker` process (all CPUs)' : args.isolation === 'process' ? `in its own process (niceness ${args.niceness})` : "on the bot's thread (inline)";
  console.log(`backend: ${backendName}; engine: ${engineWhere}; model: tiny-sd on the CPU`);
  console.log(
    `heavy job: ${HEAVY_JOB.size}, ${HEAVY_JOB.count} images, ${HEAVY_JOB.steps} steps — ${heavyStillRunning ? `still running when the burst ended (${(heavyView.original?.content ?? '').split('\n')[0]})` : 'FINISHED BEFORE THE BURST ENDED: the numbers below are not all under load'}`,
  );
  console.log(`${count} /imagine, ${intervalMs} ms apart:`);
  console.log(`  acknowledged within 3 s: ${withinDeadline}/${count}   (target ${count}/${count})`);
  console.log(`  ack p50 ${ms(percentile(sorted, 50))}, p99 ${ms(percentile(sorted, 99))}, max ${ms(sorted.at(-1) ?? Number.NaN)}   (target p99 ≤ 250 ms)`);
  console.log(
    `  bot thread event-loop delay: p99 ${String(delay['p99Ms'])} ms, p50 ${String(delay['p50Ms'])} ms, max ${String(delay['maxMs'])} ms over ${String(delay['samples'])} samples   (target p99 ≤ 50 ms; monitorEventLoopDelay at 10 ms resolution, the interval included)`,
  );
} finally {
  await sb.stop();
  await backend.stop();
}
