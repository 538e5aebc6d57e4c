import { Command, CommanderError } from 'commander';
import { loadConfig, type Config } from '../config/index.js';
import { createLoggerFromConfig } from '../log.js';
import { firstRunGuide, missingModelGuide } from './first-run.js';
import { startHeartbeat } from './doctor.js';
import { resolveModelPath } from '../hub/cache.js';
import { isImagineError } from '../errors.js';

interface StartOptions {
  config?: string;
  deploy: boolean;
}

/** After SIGTERM, the longest a shutdown may take before the process exits anyway (Docker waits 10 s by default). */
const SHUTDOWN_DEADLINE_MS = 8_000;

/**
 * `imagine-bot start`: loads the model, connects to Discord and serves /imagine until SIGTERM or SIGINT, then shuts
 * down gracefully (stops taking jobs, persists the running one, closes the gateway) and exits 0.
 * Without a token it prints the first-run guide; without a model, how to get one.
 */
export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('Run the Discord bot (prints a setup guide when DISCORD_TOKEN or the model is missing).')
    .option('--config <file>', 'configuration override file (default: config/local.json or IMAGINE_CONFIG)')
    .option('--no-deploy', 'do not register the slash commands at start (use `deploy-commands` instead)')
    .action(async (options: StartOptions, command: Command) => {
      // --config may be given before the subcommand too (imagine-bot --config FILE start).
      const configPath = options.config ?? command.parent?.opts<{ config?: string }>().config;
      const config = loadConfig(configPath ? { configPath } : {});
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
      await runUntilSignal(config, modelFolder, options.deploy);
    });
}

/**
 * Exit status 1 after a guide was printed: the bot did not start (a supervisor should not count it as running).
 * A CommanderError is how a command tells main.ts "already explained, just exit with this code".
 */
function notStarted(): CommanderError {
  return new CommanderError(1, 'imagine.notStarted', 'the bot was not started');
}

async function runUntilSignal(config: Config, modelFolder: string | undefined, deploy: boolean): Promise<void> {
  const log = createLoggerFromConfig(config);
  const { startRuntime } = await import('../discord/runtime.js');
  let stopRequested: (signal: NodeJS.Signals) => void = () => undefined;
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => (stopRequested = resolve));
  // Listen before the (slow) model load, so a SIGTERM during start-up is honoured too.
  process.once('SIGTERM', () => stopRequested('SIGTERM'));
  process.once('SIGINT', () => stopRequested('SIGINT'));

  const runtime = await startRuntime({ config, log, ...(modelFolder ? { modelFolder } : {}), deployCommands: deploy });
  const stopHeartbeat = startHeartbeat(config);
  const signal = await stopSignal;
  log.info({ signal }, 'shutting down');
  const deadline = setTimeout(() => {
    log.warn('shutdown took too long; exiting');
    process.exit(0);
  }, SHUTDOWN_DEADLINE_MS);
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
