/**
 * Puts the bot together: the engine (in its own process, src/app/engine-process.ts) → persisted fair queue → guild
 * rules → discord.js client.
 * `start` calls this; tests start the same thing as a child process through the CLI.
 */
import { parseSize, type Config } from '../config/index.js';
import { engineSetupFromConfig, openEngine } from '../app/engine.js';
import { EngineProcess } from '../app/engine-process.js';
import { startLoopDelayMonitor } from '../app/loop-delay.js';
import type { Logger } from '../log.js';
import { JobStore } from '../queue/job-store.js';
import { LocalJobQueue } from '../queue/local-queue.js';
import { Storage } from '../queue/storage.js';
import { ImagineBot } from './bot.js';
import { commandDefinitionsFor } from './command-data.js';
import { createGuildRules, requestDefaults, settingsFromConfig } from './rules.js';
import { Admission } from '../queue/admission.js';
import { GuildSettingsStore } from '../queue/settings.js';

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

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, log } = options;
  const defaultSize = parseSize(config.generation.defaults.size);
  const setup = engineSetupFromConfig(
    config,
    options.modelFolder,
    defaultSize ? { ...defaultSize, cfg: config.generation.defaults.cfg, scheduler: config.generation.defaults.scheduler } : null,
  );
  // The engine runs in its own process unless the configuration says otherwise (engine.isolation).
  const engine =
    config.engine.isolation === 'inline'
      ? await openEngine(setup, (line) => log.info({ module: 'engine' }, line))
      : await EngineProcess.start({
          setup,
          log,
          stepTimeoutMs: config.engine.stepTimeoutSeconds * 1000,
          startTimeoutMs: config.engine.startTimeoutSeconds * 1000,
          niceness: config.engine.niceness,
        });
  const defaults = requestDefaults(config, engine.info.modelScheduler);
  const stopLoopDelayMonitor = startLoopDelayMonitor(log);
  const storage = new Storage({ ...(config.storage.keyvUrl ? { url: config.storage.keyvUrl } : {}), sqlitePath: config.storage.sqlitePath, logger: log });
  log.info({ storage: storage.kind, location: storage.location }, 'storage opened');
  const store = new JobStore(storage.namespace('jobs'), { logger: log.child({ module: 'jobs' }) });
  const queue = new LocalJobQueue({ store, generator: engine.generator, logger: log.child({ module: 'queue' }) });

  const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: settingsFromConfig(config), logger: log.child({ module: 'settings' }) });
  const admission = new Admission({ settings, usage: storage.namespace('usage'), queue, maxTotal: config.queue.maxTotal, logger: log.child({ module: 'admission' }) });
  const rules = createGuildRules({ settings, admission, defaults });
  const bot = new ImagineBot({
    config,
    log,
    queue,
    rules,
    engine: { modelName: engine.info.modelName, provider: engine.info.provider },
    ...(options.deployCommands ? { commands: commandDefinitionsFor(config) } : {}),
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
