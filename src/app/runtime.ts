/**
 * The composition root: puts the bot together from its parts and is the one place that chooses them.
 *
 *   engine (an ImageGenerator) → queue backend (a JobQueue over the job store) → guild rules → discord.js bot
 *
 * `imagine-bot start` calls `startRuntime`; tests start the same thing as a child process through the CLI. The engine
 * is chosen in `startEngine` (today the pipeline in this process), the queue backend in `createQueue` (today the
 * local fair queue over keyv); other implementations of `ImageGenerator` and `JobQueue` plug in there.
 */
import { parseSize, type Config } from '../config/index.js';
import { loadPipeline } from '../diffusion/load.js';
import { schedulerNameForClass } from '../diffusion/schedulers/index.js';
import type { Logger } from '../log.js';
import { Admission, GuildSettingsStore, JobStore, LocalJobQueue, Storage, type ImageGenerator, type JobQueue, type SchedulerName } from '../queue/index.js';
import { ImagineBot, type EngineInfo } from '../discord/bot.js';
import { createGuildRules, requestDefaults, settingsFromConfig } from '../discord/rules.js';
import { PipelineImageGenerator } from './engine-adapter.js';

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

/** A loaded engine, as the rest of the bot sees it. */
export interface Engine {
  generator: ImageGenerator;
  info: EngineInfo;
  /** The scheduler the model ships with: the default when the configuration names none. */
  modelScheduler: SchedulerName;
  release(): Promise<void>;
}

/**
 * Loads the model into a pipeline in this process and warms it up with one 2-step generation in the default job
 * shape, so the first job does not pay for shader compilation and the like.
 */
export async function startEngine(config: Config, log: Logger, modelFolder: string): Promise<Engine> {
  const pipeline = await loadPipeline(modelFolder, {
    provider: config.model.provider,
    safetyChecker: config.model.safetyChecker,
    pinUnetShapes: config.model.pinUnetShapes,
    fuseAttention: config.model.fuseAttention,
    log: (line) => log.info({ module: 'engine' }, line),
  });
  const release = async () => {
    await pipeline.release();
    await pipeline.model.release();
  };
  const modelScheduler = schedulerNameForClass(String(pipeline.model.schedulerConfig._class_name ?? '')) ?? 'pndm';
  const defaults = requestDefaults(config, modelScheduler);
  const defaultSize = parseSize(defaults.size);
  if (defaultSize) {
    try {
      await pipeline.warmUp({ ...defaultSize, cfg: defaults.cfg, scheduler: defaults.scheduler, safetyCheck: config.model.safetyChecker });
    } catch (error) {
      await release();
      throw error;
    }
  }
  return {
    generator: new PipelineImageGenerator(pipeline, { safetyCheck: config.model.safetyChecker, previewIntervalMs: config.preview.minIntervalMs }),
    info: { modelName: pipeline.model.name, provider: pipeline.provider },
    modelScheduler,
    release,
  };
}

/** The queue backend: jobs persisted in the job store, served fairly by one worker that calls `generator`. */
export function createQueue(storage: Storage, generator: ImageGenerator, log: Logger): JobQueue {
  const store = new JobStore(storage.namespace('jobs'), { logger: log.child({ module: 'jobs' }) });
  return new LocalJobQueue({ store, generator, logger: log.child({ module: 'queue' }) });
}

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, log } = options;
  const engine = await startEngine(config, log, options.modelFolder);
  const storage = new Storage({ ...(config.storage.keyvUrl ? { url: config.storage.keyvUrl } : {}), sqlitePath: config.storage.sqlitePath, logger: log });
  log.info({ storage: storage.kind, location: storage.location }, 'storage opened');
  const queue = createQueue(storage, engine.generator, log);

  const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: settingsFromConfig(config), logger: log.child({ module: 'settings' }) });
  const admission = new Admission({ settings, usage: storage.namespace('usage'), queue, maxTotal: config.queue.maxTotal, logger: log.child({ module: 'admission' }) });
  const rules = createGuildRules({ settings, admission, defaults: requestDefaults(config, engine.modelScheduler) });
  const bot = new ImagineBot({
    config,
    log,
    queue,
    rules,
    engine: engine.info,
    deliveries: storage.namespace('deliveries'),
    registerCommands: options.deployCommands,
  });
  try {
    await bot.start();
  } catch (error) {
    await bot.stop().catch(() => undefined);
    await storage.close().catch(() => undefined);
    await engine.release().catch(() => undefined);
    throw error;
  }
  return {
    bot,
    async stop() {
      await bot.stop();
      await storage.close();
      await engine.release();
    },
  };
}
