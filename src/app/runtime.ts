/**
 * The composition root: puts the bot together from its parts and is the one place that chooses them.
 *
 *   engine (an ImageGenerator, in its own process: engine-process.ts) → queue backend (a JobQueue over the job
 *   store) → guild rules → discord.js bot
 *
 * `imagine-bot start` calls `startRuntime`; tests start the same thing as a child process through the CLI. The engine
 * is chosen in `startEngine` (the pipeline in a child process, or on this thread with `engine.isolation: "inline"`),
 * the queue backend in `createQueue` (today the local fair queue over keyv); other implementations of
 * `ImageGenerator` and `JobQueue` plug in there.
 */
import { parseSize, type Config } from '../config/index.js';
import { engineSetupFromConfig, openEngine, type Engine } from './engine.js';
import { EngineProcess } from './engine-process.js';
import { startLoopDelayMonitor } from './loop-delay.js';
import type { Logger } from '../log.js';
import { Admission, GuildSettingsStore, JobStore, LocalJobQueue, Storage, type ImageGenerator, type JobQueue } from '../queue/index.js';
import { ImagineBot } from '../discord/bot.js';
import { createGuildRules, requestDefaults, settingsFromConfig } from '../discord/rules.js';

export interface RuntimeOptions {
  config: Config;
  log: Logger;
  modelFolder: string;
  /** Register the slash commands after connecting. */
  deployCommands: boolean;
}

export interface Runtime {
  bot: ImagineBot;
  stop(): Promise<void>;
}

/**
 * Loads the model and warms it up in the default job shape (so the first job does not pay for shader compilation
 * and the like): in a child process unless the configuration says otherwise (engine.isolation).
 */
export async function startEngine(config: Config, log: Logger, modelFolder: string): Promise<Engine> {
  const defaultSize = parseSize(config.generation.defaults.size);
  const setup = engineSetupFromConfig(
    config,
    modelFolder,
    defaultSize ? { ...defaultSize, cfg: config.generation.defaults.cfg, scheduler: config.generation.defaults.scheduler } : null,
  );
  if (config.engine.isolation === 'inline') return openEngine(setup, (line) => log.info({ module: 'engine' }, line));
  return EngineProcess.start({
    setup,
    log,
    stepTimeoutMs: config.engine.stepTimeoutSeconds * 1000,
    startTimeoutMs: config.engine.startTimeoutSeconds * 1000,
    niceness: config.engine.niceness,
  });
}

/** The queue backend: jobs persisted in the job store, served fairly by one worker that calls `generator`. */
export function createQueue(config: Config, storage: Storage, generator: ImageGenerator, log: Logger): JobQueue {
  const store = new JobStore(storage.namespace('jobs'), { logger: log.child({ module: 'jobs' }) });
  return new LocalJobQueue({ store, generator, logger: log.child({ module: 'queue' }), shutdownGraceMs: config.queue.shutdownGraceSeconds * 1000 });
}

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, log } = options;
  // Storage first: a damaged store file is reported in a second, not after the model has loaded.
  const storage = await Storage.open({ ...(config.storage.keyvUrl ? { url: config.storage.keyvUrl } : {}), sqlitePath: config.storage.sqlitePath, logger: log });
  log.info({ storage: storage.kind, location: storage.location }, 'storage opened');
  let engine: Engine;
  try {
    engine = await startEngine(config, log, options.modelFolder);
  } catch (error) {
    await storage.close().catch(() => undefined);
    throw error;
  }
  const defaults = requestDefaults(config, engine.info.modelScheduler);
  const stopLoopDelayMonitor = startLoopDelayMonitor(log);
  const queue = createQueue(config, storage, engine.generator, log);

  const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: settingsFromConfig(config), logger: log.child({ module: 'settings' }) });
  const admission = new Admission({ settings, usage: storage.namespace('usage'), queue, maxTotal: config.queue.maxTotal, logger: log.child({ module: 'admission' }) });
  const rules = createGuildRules({ settings, admission, defaults });
  const bot = new ImagineBot({
    config,
    log,
    queue,
    rules,
    engine: { modelName: engine.info.modelName, provider: engine.info.provider },
    registerCommands: options.deployCommands,
  });
  try {
    await bot.start();
  } catch (error) {
    await bot.stop().catch(() => undefined);
    await storage.close().catch(() => undefined);
    await engine.close().catch(() => undefined);
    stopLoopDelayMonitor();
    throw error;
  }
  return {
    bot,
    async stop() {
      await bot.stop();
      await storage.close();
      await engine.close();
      stopLoopDelayMonitor();
    },
  };
}
