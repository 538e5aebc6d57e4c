/**
 * Puts the bot together: model → pipeline worker → persisted fair queue → guild rules → discord.js client.
 * `start` calls this; tests start the same thing as a child process through the CLI.
 */
import { parseSize, type Config } from '../config/index.js';
import { loadPipeline } from '../diffusion/load.js';
import { schedulerNameForClass } from '../diffusion/schedulers/index.js';
import type { Logger } from '../log.js';
import { JobStore } from '../queue/job-store.js';
import { LocalJobQueue } from '../queue/local-queue.js';
import { Storage } from '../queue/storage.js';
import { ImagineBot } from './bot.js';
import { commandDefinitionsFor } from './command-data.js';
import { PipelineImageGenerator } from './engine-adapter.js';
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
  const pipeline = await loadPipeline(options.modelFolder, {
    provider: config.model.provider,
    safetyChecker: config.model.safetyChecker,
    pinUnetShapes: config.model.pinUnetShapes,
    fuseAttention: config.model.fuseAttention,
    log: (line) => log.info({ module: 'engine' }, line),
  });
  const modelScheduler = schedulerNameForClass(String(pipeline.model.schedulerConfig._class_name ?? '')) ?? 'pndm';
  const defaults = requestDefaults(config, modelScheduler);
  // Before the first job: a job in the default shape should not pay for shader compilation and the like.
  const defaultSize = parseSize(defaults.size);
  if (defaultSize) {
    try {
      await pipeline.warmUp({ ...defaultSize, cfg: defaults.cfg, scheduler: defaults.scheduler, safetyCheck: config.model.safetyChecker });
    } catch (error) {
      await pipeline.release();
      await pipeline.model.release();
      throw error;
    }
  }
  const storage = new Storage({ ...(config.storage.keyvUrl ? { url: config.storage.keyvUrl } : {}), sqlitePath: config.storage.sqlitePath, logger: log });
  log.info({ storage: storage.kind, location: storage.location }, 'storage opened');
  const store = new JobStore(storage.namespace('jobs'), { logger: log.child({ module: 'jobs' }) });
  const generator = new PipelineImageGenerator(pipeline, { safetyCheck: config.model.safetyChecker, previewIntervalMs: config.preview.minIntervalMs });
  const queue = new LocalJobQueue({ store, generator, logger: log.child({ module: 'queue' }), shutdownGraceMs: config.queue.shutdownGraceSeconds * 1000 });

  const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: settingsFromConfig(config), logger: log.child({ module: 'settings' }) });
  const admission = new Admission({ settings, usage: storage.namespace('usage'), queue, maxTotal: config.queue.maxTotal, logger: log.child({ module: 'admission' }) });
  const rules = createGuildRules({ settings, admission, defaults });
  const bot = new ImagineBot({
    config,
    log,
    queue,
    rules,
    engine: { modelName: pipeline.model.name, provider: pipeline.provider },
    ...(options.deployCommands ? { commands: commandDefinitionsFor(config) } : {}),
  });
  try {
    await bot.start();
  } catch (error) {
    await bot.stop().catch(() => undefined);
    await storage.close().catch(() => undefined);
    throw error;
  }
  return {
    bot,
    async stop() {
      await bot.stop();
      await storage.close();
      await pipeline.release();
      await pipeline.model.release();
    },
  };
}
