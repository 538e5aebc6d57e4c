import { Command, CommanderError } from 'commander';
import { loadConfig, type Config } from '../config/index.js';
import { createLoggerFromConfig } from '../log.js';
import { firstRunGuide, missingModelGuide } from './first-run.js';
import { startHeartbeat } from './doctor.js';
import { resolveModelPath } from '../hub/cache.js';
import { isImagineError } from '../errors.js';
import { alreadyReported } from './reported.js';
import { checkDiscordToken, type DiscordBotUser } from './discord-check.js';
import { checkShardBackend, shardPlanOf } from '../discord/shards.js';

interface StartOptions {
  config?: string;
  deploy: boolean;
  shards?: string;
  shardCount?: string;
}

/**
 * After SIGTERM, how long the rest of a shutdown may take once the running job's grace (`queue.shutdownGraceSeconds`)
 * is over: persisting, the last message edits, closing the gateway. Then the process exits anyway.
 */
const SHUTDOWN_AFTER_GRACE_MS = 8_000;

/**
 * `imagine-bot start`: checks the token with Discord, loads the model, connects to Discord and serves /imagine until
 * SIGTERM or SIGINT, then shuts down gracefully and exits 0: it starts no new job, lets the running one finish and be
 * posted within `queue.shutdownGraceSeconds` (else interrupts it and keeps it persisted for the next start), and closes
 * the gateway.
 * Without a token it prints the first-run guide; without a model, how to get one.
 */
export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('Run the Discord bot: checks the token with Discord, loads the model, serves /imagine (prints a setup guide when DISCORD_TOKEN or the model is missing).')
    .option('--config <file>', 'configuration override file (default: config/local.json or IMAGINE_CONFIG)')
    .option('--no-deploy', 'do not register the slash commands at start (use `deploy-commands` instead)')
    .option(
      '--shards <ids>',
      'run only these gateway shards, e.g. 0,1 (one of several bot processes, with --shard-count; needs queue.backend redis); default discord.shards / IMAGINE_SHARDS, "auto" = all',
    )
    .option('--shard-count <n>', 'how many shards the bot has over all its processes; default discord.shardCount / IMAGINE_SHARD_COUNT, "auto" = as Discord recommends')
    .action(async (options: StartOptions, command: Command) => {
      // --config may be given before the subcommand too (imagine-bot --config FILE start).
      const configPath = options.config ?? command.parent?.opts<{ config?: string }>().config;
      // The flags override the environment, and are checked by the configuration's own rules.
      const env = {
        ...process.env,
        ...(options.shards !== undefined ? { IMAGINE_SHARDS: options.shards } : {}),
        ...(options.shardCount !== undefined ? { IMAGINE_SHARD_COUNT: options.shardCount } : {}),
      };
      const config = loadConfig({ ...(configPath ? { configPath } : {}), env });
      // A shard set that needs other processes, on the one-process local queue, is refused before anything starts.
      checkShardBackend(shardPlanOf(config.discord), config.queue.backend);
      if (!config.discord.token) {
        process.stdout.write(`${firstRunGuide({ appId: config.discord.appId })}\n`);
        throw notStarted();
      }
      let modelFolder: string | undefined;
      try {
        // With the redis backend the workers load the model; the bot does not need one.
        if (config.queue.backend === 'local') modelFolder = resolveModelPath(config.model.path, { cacheDir: config.hub.cacheDir });
      } catch (error) {
        if (!isImagineError(error)) throw error;
        process.stdout.write(`${missingModelGuide({ problem: config.model.path ? error.message : undefined })}\n`);
        throw notStarted();
      }
      // Discord before the model: a wrong token or no route to Discord is reported at once, not after the model has
      // loaded and warmed up.
      const botUser = await checkDiscordToken({ apiBase: config.discord.apiBase, token: config.discord.token });
      await runUntilSignal(config, modelFolder, botUser, options.deploy);
    });
}

/** Exit status 1 after a guide was printed: the bot did not start (a supervisor should not count it as running). */
function notStarted(): CommanderError {
  return alreadyReported('imagine.notStarted', 'the bot was not started');
}

async function runUntilSignal(config: Config, modelFolder: string | undefined, botUser: DiscordBotUser, deploy: boolean): Promise<void> {
  const log = createLoggerFromConfig(config);
  const { startRuntime } = await import('../app/runtime.js');
  let stopRequested: (signal: NodeJS.Signals) => void = () => undefined;
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => (stopRequested = resolve));
  // Listen before the (slow) model load, so a SIGTERM during start-up is honoured too.
  process.once('SIGTERM', () => stopRequested('SIGTERM'));
  process.once('SIGINT', () => stopRequested('SIGINT'));

  log.info({ user: botUser.username, id: botUser.id }, 'Discord accepted the token');
  const runtime = await startRuntime({ config, log, ...(modelFolder ? { modelFolder } : {}), deployCommands: deploy });
  const stopHeartbeat = startHeartbeat(config);
  const signal = await stopSignal;
  log.info({ signal }, 'shutting down');
  const deadline = setTimeout(() => {
    log.warn('shutdown took too long; exiting');
    process.exit(0);
  }, config.queue.shutdownGraceSeconds * 1000 + SHUTDOWN_AFTER_GRACE_MS);
  deadline.unref();
  try {
    await runtime.stop();
  } finally {
    stopHeartbeat();
  }
  log.info('stopped');
  // onnxruntime and keyv adapters can hold the event loop open after closing; the work is done, so leave now.
  setTimeout(() => process.exit(0), 200).unref();
}
