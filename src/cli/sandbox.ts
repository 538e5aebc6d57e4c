import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, loadConfig } from '../config/index.js';
import type { BotSupervisor, DiscordEmulator } from '../emulator/index.js';
import { ImagineError } from '../errors.js';
import { findExecutable } from '../util/executables.js';
import type { RedisServer } from '../util/redis-server.js';
import type { SandboxWorkers } from './sandbox-workers.js';

/**
 * `imagine-bot sandbox`: a local Discord (the emulator) plus the bot as a child process pointed at it, and a web
 * page at `/` where a person can try the bot without a Discord account. The bot runs the production code path
 * (`imagine-bot start`); only DISCORD_API_BASE/DISCORD_CDN_BASE and the token differ. With `--workers N` the bot
 * queues on Redis (queue.backend "redis") and N `imagine-bot worker` processes run the jobs, as in production.
 */

const here = dirname(fileURLToPath(import.meta.url));

/** `node [--import tsx] <imagine-bot cli> <subcommand>`: works from the sources (tsx) and from the build (dist). */
export function imagineBotCommand(subcommand: string, ...extraArgs: string[]): { command: string; args: string[] } {
  const fromSources = import.meta.url.endsWith('.ts');
  const cli = join(here, fromSources ? 'main.ts' : 'main.js');
  return { command: process.execPath, args: [...(fromSources ? ['--import', 'tsx'] : []), cli, subcommand, ...extraArgs] };
}

/** The tiny test model (its images are noise), looked up from the sources or the build. */
export function findTinyModel(): string | null {
  let dir = here;
  for (let i = 0; i < 5; i += 1) {
    const candidate = join(dir, 'test', 'fixtures', 'tiny-sd');
    if (existsSync(join(candidate, 'model_index.json'))) return candidate;
    dir = dirname(dir);
  }
  return null;
}

/** The environment the bot child gets: the emulator's Discord settings, the model and the data folder. */
export function sandboxBotEnv(emulator: DiscordEmulator, options: { model?: string | null; dataDir: string }): Record<string, string | undefined> {
  return {
    ...emulator.botEnv(),
    ...(options.model ? { IMAGINE_MODEL: options.model } : {}),
    IMAGINE_DATA_DIR: options.dataDir,
    // Empty means "not set" to the configuration loader: a developer's .env must not point the sandbox at a real
    // dev guild (unknown here) or at the production Redis.
    DISCORD_DEV_GUILD_ID: '',
    KEYV_URL: '',
    // Nor at a share of some other bot's shards: the sandbox's bot runs every shard of the sandbox (`--shards N`).
    IMAGINE_SHARDS: '',
    IMAGINE_SHARD_COUNT: '',
  };
}

export interface SandboxOptions {
  port: number;
  /** Model folder; null/undefined: the configured one, else the tiny test model. */
  model?: string | null;
  /** Data folder; default a fresh temporary folder. */
  dataDir?: string;
  seedFile?: string;
  /** The bot's command line; default `imagine-bot start`. `false`: run the emulator alone. */
  botCommand?: { command: string; args: string[] } | false;
  /** Run `imagine-bot deploy-commands` when the bot has not registered any command shortly after connecting. */
  deployFallback?: boolean;
  /** The command line for that (default `imagine-bot deploy-commands`). */
  deployCommand?: { command: string; args: string[] };
  /** Where the sandbox's own messages go. */
  print?: (line: string) => void;
  /** Where the bot's output lines go (default: printed with a `[bot]` prefix). */
  botOutput?: (line: string) => void;
  readyTimeoutMs?: number;
  /** Extra environment for the bot and deploy processes (e.g. IMAGINE_CONFIG from the CLI's global --config). */
  env?: Record<string, string>;
  /** Run the bot with the Redis backend and this many `imagine-bot worker` processes (0/undefined: the local queue). */
  workers?: number;
  /** The Redis for `workers`; default a private redis-server (AOF on) started from PATH. */
  redisUrl?: string;
  /** The worker command line (default `imagine-bot worker --threads T`, T = the CPUs shared out among the workers). */
  workerCommand?: { command: string; args: string[] };
  /** Where the workers' output lines go (default: printed with a `[worker N]` prefix). */
  workerOutput?: (index: number, line: string) => void;
  /**
   * Run the bot with this many gateway shards (its one process runs them all), in a world with guilds on every shard
   * (the emulator's `seedWithShards`). Default: the seed's own (one shard per 1 000 guilds).
   */
  shards?: number;
}

export interface RunningSandbox {
  emulator: DiscordEmulator;
  supervisor: BotSupervisor | null;
  /** The worker processes of `workers` (null without). */
  workers: SandboxWorkers | null;
  /** The Redis the bot and the workers share (null without `workers`). */
  redisUrl: string | null;
  url: string;
  stop(): Promise<void>;
}

/** The model the configuration (IMAGINE_MODEL, .env, config/local.json) names, if any. */
function configuredModel(configPath?: string): string | null {
  try {
    return loadConfig(configPath ? { configPath } : {}).model.path || null;
  } catch {
    return process.env.IMAGINE_MODEL || null;
  }
}

/** Sizes and steps that keep the tiny model quick on a CPU. */
const TINY_MODEL_CONFIG = {
  generation: { defaults: { size: '128x128', steps: 20 }, limits: { sizes: ['128x128', '256x256', '512x512'] } },
};

/** How a model was chosen, for the one line the sandbox prints about it. */
function chooseModel(explicit: string | null | undefined, configPath?: string): { model: string | null; note: string } {
  const tiny = findTinyModel();
  const tinyNote = (path: string) => `Model: ${path} — the tiny test model: its images are noise. Pass --model DIR (a diffusers ONNX SD 1.5 folder) for real pictures.`;
  if (explicit) {
    const path = resolve(explicit);
    return { model: path, note: tiny && path === resolve(tiny) ? tinyNote(path) : `Model: ${path}` };
  }
  const configured = configuredModel(configPath);
  if (configured) return { model: null, note: `Model: ${configured} (configured)` };
  if (!tiny) return { model: null, note: 'Model: the configured one (the tiny test model was not found)' };
  return { model: tiny, note: tinyNote(tiny) };
}

/** The one line `sandbox --workers` answers when it has neither --redis nor a redis-server to start. */
export const REDIS_SERVER_MISSING =
  'sandbox --workers needs Redis: install redis-server (sudo apt-get install -y redis-server, or brew install redis) or pass --redis redis://host:6379';

export async function runSandbox(options: SandboxOptions): Promise<RunningSandbox> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const workerCount = options.botCommand === false ? 0 : (options.workers ?? 0);
  // Checked before anything starts, so a missing Redis is one line and nothing to clean up.
  if (workerCount > 0 && !options.redisUrl && !findExecutable('redis-server')) throw new ImagineError('redis_server_missing', REDIS_SERVER_MISSING);
  // Imported here, not at the top: every other imagine-bot command would pay for loading the emulator otherwise.
  const { BotSupervisor, DEFAULT_SEED, loadSeedFile, seedWithShards, startDiscordEmulator } = await import('../emulator/index.js');
  const world = options.shards
    ? { seed: seedWithShards(options.seedFile ? loadSeedFile(options.seedFile) : DEFAULT_SEED, options.shards) }
    : options.seedFile
      ? { seedFile: options.seedFile }
      : {};
  const emulator = await startDiscordEmulator({ port: options.port, ...world });
  const url = `${emulator.url}/`;
  print(`Imagine sandbox: ${url}  (a local Discord; control API at ${emulator.url}/_sandbox)`);
  if (options.shards) print(`Shards: ${options.shards}, with guilds on every shard; the page shows which shard serves the selected guild.`);
  let supervisor: BotSupervisor | null = null;
  let workers: SandboxWorkers | null = null;
  let redis: RedisServer | null = null;
  let redisUrl: string | null = null;
  const stop = async () => {
    // The bot first (it stops queueing), then the workers (a running job goes back to Redis), then Redis.
    await supervisor?.stop().catch(() => undefined);
    await workers?.stop().catch(() => undefined);
    await redis?.stop().catch(() => undefined);
    await emulator.stop();
  };
  if (options.botCommand === false) {
    print(`Open ${url} to try it (no bot started: connect one with DISCORD_API_BASE=${emulator.apiBase} DISCORD_TOKEN=${emulator.token}). Ctrl-C stops the sandbox.`);
    return { emulator, supervisor, workers, redisUrl, url, stop };
  }

  const { model, note } = chooseModel(options.model, options.env?.IMAGINE_CONFIG);
  print(note);
  const dataDir = options.dataDir ? resolve(options.dataDir) : mkdtempSync(join(tmpdir(), 'imagine-sandbox-'));
  print(`Data: ${dataDir}`);
  const env: Record<string, string | undefined> = { ...(options.env ?? {}), ...sandboxBotEnv(emulator, { model, dataDir }) };
  if (options.shards) env['IMAGINE_SHARD_COUNT'] = String(options.shards);
  const tiny = findTinyModel();
  if (model && tiny && resolve(model) === resolve(tiny) && !env['IMAGINE_CONFIG']) {
    // The tiny model's UNet is cheap at 128² but takes seconds per step at 512² on a CPU: offer small sizes so
    // trying the sandbox takes seconds, not minutes. A --config given by the user wins.
    const configPath = join(dataDir, 'sandbox-tiny-model.json');
    writeFileSync(configPath, `${JSON.stringify(TINY_MODEL_CONFIG, null, 2)}\n`);
    env['IMAGINE_CONFIG'] = configPath;
    print(`Config: ${configPath} (small sizes for the tiny model)`);
  }
  if (workerCount > 0) {
    try {
      if (options.redisUrl) {
        redisUrl = options.redisUrl;
      } else {
        const { startRedis } = await import('../util/redis-server.js');
        // AOF on, as docs/queue-redis.md asks of a Redis backend; the files live in a temporary folder.
        redis = await startRedis({ appendOnly: true });
        redisUrl = redis.url;
        print(`Redis: ${redisUrl} (a private redis-server, AOF on, stopped with the sandbox)`);
      }
      env['IMAGINE_QUEUE_BACKEND'] = 'redis';
      env['REDIS_URL'] = redisUrl;
      const { SandboxWorkers } = await import('./sandbox-workers.js');
      // The workers share the CPUs: each ORT session gets its part instead of all of them.
      const threads = String(Math.max(1, Math.floor(availableParallelism() / workerCount)));
      const workerCommand = options.workerCommand ?? imagineBotCommand('worker', '--threads', threads);
      print(`Starting ${workerCount} worker${workerCount === 1 ? '' : 's'}: ${[workerCommand.command, ...workerCommand.args].join(' ')}`);
      workers = await SandboxWorkers.start({
        count: workerCount,
        command: workerCommand,
        env,
        redisUrl,
        output: options.workerOutput ?? ((index, line) => process.stdout.write(`[worker ${index}] ${line}\n`)),
      });
      workers.serveOn(emulator);
      print(`Workers ready: GET ${emulator.url}/_sandbox/workers lists them, POST ${emulator.url}/_sandbox/workers/:index/kill kills one (respawned after 2 s).`);
    } catch (error) {
      await stop();
      throw error;
    }
  }

  const botCommand = options.botCommand ?? imagineBotCommand('start');
  const botOutput = options.botOutput ?? ((line: string) => process.stdout.write(`[bot] ${line}\n`));
  supervisor = new BotSupervisor({ ...botCommand, env, emulator, output: botOutput, readyTimeoutMs: options.readyTimeoutMs ?? 180_000 });
  emulator.attachBot(supervisor);
  print(`Starting the bot: ${[botCommand.command, ...botCommand.args].join(' ')}`);
  try {
    await supervisor.start();
  } catch (error) {
    await stop();
    throw error;
  }
  print('Bot connected.');

  if (options.deployFallback !== false) {
    const registered = await emulator
      .waitFor(() => (emulator.commands.all().length > 0 ? true : null), 5_000, 'no commands')
      .catch(() => false);
    if (!registered) {
      const deploy = options.deployCommand ?? (options.botCommand ? null : imagineBotCommand('deploy-commands'));
      if (deploy) {
        print('The bot registered no commands; running deploy-commands against the sandbox.');
        const deployer = new BotSupervisor({ ...deploy, env, output: botOutput });
        await deployer.start();
        const exit = await deployer.waitForExit();
        if (exit?.code !== 0) print(`deploy-commands failed (exit ${String(exit?.code)}); see the [bot] lines above.`);
      } else {
        print('The bot registered no commands yet.');
      }
    }
  }
  const names = emulator.commands.all().map((c) => `/${String(c.name)}`);
  print(`Commands: ${names.length > 0 ? names.join(', ') : 'none'}`);
  print(`Open ${url} to try it. Ctrl-C stops the sandbox and the bot${workers ? ', the workers' : ''}${redis ? ' and Redis' : ''}.`);
  return { emulator, supervisor, workers, redisUrl, url, stop };
}

/** Splits a command line into words (double or single quotes group words); or takes a JSON array. */
export function parseCommandLine(text: string): { command: string; args: string[] } {
  let words: string[];
  if (text.trim().startsWith('[')) {
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed) || !parsed.every((w) => typeof w === 'string')) throw new InvalidArgumentError('must be a JSON array of strings');
    words = parsed;
  } else {
    words = [...text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
  }
  const [command, ...args] = words;
  if (!command) throw new InvalidArgumentError('is empty');
  return { command, args };
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('must be a port number (0 picks a free one)');
  return port;
}

interface SandboxCliOptions {
  port: number;
  model?: string;
  data?: string;
  seed?: string;
  botCommand?: { command: string; args: string[] };
  deployCommand?: { command: string; args: string[] };
  bot: boolean;
  deploy: boolean;
  workers?: number;
  redis?: string;
  shards?: number;
}

function parseShardCount(value: string): number {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > 16) throw new InvalidArgumentError('must be a whole number from 1 to 16');
  return count;
}

function parseWorkerCount(value: string): number {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new InvalidArgumentError('must be a whole number from 1 to 64');
  return count;
}

export function registerSandboxCommand(program: Command): void {
  program
    .command('sandbox')
    .description('Try the bot locally: a local Discord with a web page, and the bot connected to it. No Discord account needed.')
    .option('--port <port>', 'port on 127.0.0.1 (0 picks a free one)', parsePort, 8787)
    .option('--model <dir>', 'model folder (default: the configured model, else the tiny test model whose images are noise)')
    .option('--data <dir>', 'data folder for the bot (default: a new temporary folder)')
    .option('--seed <file>', 'JSON file with the guilds, channels and users to emulate')
    .option('--bot-command <command>', 'run this instead of `imagine-bot start` (a command line, or a JSON array)', parseCommandLine)
    .option('--deploy-command <command>', 'run this instead of `imagine-bot deploy-commands` for the fallback below', parseCommandLine)
    .option('--no-bot', 'run the local Discord only')
    .option('--no-deploy', 'do not run deploy-commands when the bot registers no commands itself')
    .option('--workers <n>', 'queue on Redis and run N `imagine-bot worker` processes (as in production); see GET /_sandbox/workers', parseWorkerCount)
    .option('--redis <url>', 'with --workers: the Redis to use (default: a private redis-server started from PATH, AOF on)')
    .option('--shards <n>', 'run the bot with N gateway shards, in a world with guilds on every shard (the page shows which shard serves a guild)', parseShardCount)
    .action(async (options: SandboxCliOptions) => {
      if (options.workers && !options.bot) throw new ConfigError(['--workers runs jobs for the bot: it cannot go with --no-bot']);
      if (options.redis && !options.workers) throw new ConfigError(['--redis is for --workers N: the sandbox without workers uses the local queue']);
      if (options.redis && !/^rediss?:\/\/\S+$/i.test(options.redis)) throw new ConfigError(['--redis must be a redis:// or rediss:// URL']);
      const sandbox = await runSandbox({
        port: options.port,
        model: options.model ?? null,
        ...(options.data ? { dataDir: options.data } : {}),
        ...(options.seed ? { seedFile: options.seed } : {}),
        botCommand: options.bot ? options.botCommand : false,
        deployFallback: options.deploy,
        ...(options.deployCommand ? { deployCommand: options.deployCommand } : {}),
        ...(options.workers ? { workers: options.workers } : {}),
        ...(options.redis ? { redisUrl: options.redis } : {}),
        ...(options.shards ? { shards: options.shards } : {}),
        // The CLI's global --config applies to the bot too.
        ...(program.opts<{ config?: string }>().config ? { env: { IMAGINE_CONFIG: resolve(program.opts<{ config: string }>().config) } } : {}),
      });
      let stopping = false;
      // The bot dying on its own is reported, and the page keeps working so the person can read what happened.
      sandbox.supervisor?.on('exit', (info: { code: number | null; signal: string | null }) => {
        if (!stopping) process.stdout.write(`The bot exited (code ${String(info.code)}, signal ${String(info.signal)}). POST /_sandbox/bot/restart starts it again.\n`);
      });
      await new Promise<void>((resolveStop) => {
        const onSignal = () => {
          if (stopping) return;
          stopping = true;
          process.stdout.write('Stopping the bot and the sandbox…\n');
          void sandbox.stop().finally(() => resolveStop());
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
      });
    });
}

// Run directly (`node --import tsx src/cli/sandbox.ts sandbox …`) until the main CLI registers the command.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const program = new Command('imagine-bot');
  registerSandboxCommand(program);
  await program.parseAsync(process.argv).catch((error: unknown) => {
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
