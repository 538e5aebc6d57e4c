/**
 * Puts the bot together: model → pipeline worker → persisted fair queue → guild rules → discord.js client; with
 * queue.backend "redis" the model stays with the `imagine-bot worker` processes and the queue is the Redis one.
 * `start` calls this; tests start the same thing as a child process through the CLI.
 */
import { parseSize, type Config } from '../config/index.js';
import { loadPipeline } from '../diffusion/load.js';
import { schedulerNameForClass } from '../diffusion/schedulers/index.js';
import type { Logger } from '../log.js';
import { JobStore } from '../queue/job-store.js';
import { LocalJobQueue } from '../queue/local-queue.js';
import { RedisJobQueue } from '../queue/redis/redis-queue.js';
import { timingsFromQueueConfig } from '../queue/redis/worker.js';
import type { JobQueue } from '../queue/types.js';
import type { SchedulerName } from '../diffusion/schedulers/types.js';
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
  /** The model folder; unused with queue.backend "redis" (the workers load the model). */
  modelFolder?: string;
  /** Register the slash commands after connecting. */
  deployCommands: boolean;
}

export interface Runtime {
  bot: ImagineBot;
  stop(): Promise<void>;
}

/** A loaded, warmed-up pipeline behind the queue's ImageGenerator contract: what the bot (local) or a worker runs. */
export interface Engine {
  generator: PipelineImageGenerator;
  modelName: string;
  provider: string;
  /** The scheduler named in the model's scheduler_config.json. */
  modelScheduler: SchedulerName;
  release(): Promise<void>;
}

/** Loads the model and warms the pipeline up in the default job shape (shared by `start` and `imagine-bot worker`). */
export async function loadEngine(
  config: Config,
  modelFolder: string,
  log: Logger,
  options: { deviceId?: number; intraOpNumThreads?: number } = {},
): Promise<Engine> {
  const pipeline = await loadPipeline(modelFolder, {
    provider: config.model.provider,
    safetyChecker: config.model.safetyChecker,
    pinUnetShapes: config.model.pinUnetShapes,
    fuseAttention: config.model.fuseAttention,
    ...options,
    log: (line) => log.info({ module: 'engine' }, line),
  });
  const release = async () => {
    await pipeline.release();
    await pipeline.model.release();
  };
  const modelScheduler = schedulerNameForClass(String(pipeline.model.schedulerConfig._class_name ?? '')) ?? 'pndm';
  const defaults = requestDefaults(config, modelScheduler);
  // Before the first job: a job in the default shape should not pay for shader compilation and the like.
  const defaultSize = parseSize(defaults.size);
  if (defaultSize) {
    try {
      await pipeline.warmUp({ ...defaultSize, cfg: defaults.cfg, scheduler: defaults.scheduler, safetyCheck: config.model.safetyChecker });
    } catch (error) {
      await release();
      throw error;
    }
  }
  const generator = new PipelineImageGenerator(pipeline, { safetyCheck: config.model.safetyChecker, previewIntervalMs: config.preview.minIntervalMs });
  return { generator, modelName: pipeline.model.name, provider: pipeline.provider, modelScheduler, release };
}

/** Where the bot keeps settings and job records: KEYV_URL, else (backend redis) the workers' Redis, else SQLite. */
function storageUrl(config: Config): string | undefined {
  if (config.storage.keyvUrl) return config.storage.keyvUrl;
  return config.queue.backend === 'redis' ? config.queue.redisUrl : undefined;
}

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, log } = options;
  // Backend redis: the workers load the model, the bot only queues; backend local: the bot runs it.
  const engine = config.queue.backend === 'local' ? await loadEngine(config, requireModelFolder(options.modelFolder), log) : undefined;
  const defaults = requestDefaults(config, engine?.modelScheduler ?? 'pndm');
  const url = storageUrl(config);
  const storage = new Storage({ ...(url ? { url } : {}), sqlitePath: config.storage.sqlitePath, logger: log });
  log.info({ storage: storage.kind, location: storage.location }, 'storage opened');
  const store = new JobStore(storage.namespace('jobs'), { logger: log.child({ module: 'jobs' }) });
  const queue: JobQueue = engine
    ? new LocalJobQueue({ store, generator: engine.generator, identity: { model: engine.modelName, provider: engine.provider }, logger: log.child({ module: 'queue' }) })
    : new RedisJobQueue({ url: config.queue.redisUrl, store, ...timingsFromQueueConfig(config.queue), logger: log.child({ module: 'queue' }) });
  if (!engine) log.info({ redis: storage.kind === 'redis' ? storage.location : 'configured' }, 'queue backend redis: jobs run on imagine-bot worker processes');

  const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: settingsFromConfig(config), logger: log.child({ module: 'settings' }) });
  const admission = new Admission({ settings, usage: storage.namespace('usage'), queue, maxTotal: config.queue.maxTotal, logger: log.child({ module: 'admission' }) });
  const rules = createGuildRules({ settings, admission, defaults });
  const bot = new ImagineBot({
    config,
    log,
    queue,
    rules,
    engine: engine ? { modelName: engine.modelName, provider: engine.provider } : { modelName: 'the workers\' model', provider: 'Redis workers' },
    ...(options.deployCommands ? { commands: commandDefinitionsFor(config) } : {}),
  });
  try {
    await bot.start();
  } catch (error) {
    await bot.stop().catch(() => undefined);
    await storage.close().catch(() => undefined);
    await engine?.release().catch(() => undefined);
    throw error;
  }
  return {
    bot,
    async stop() {
      await bot.stop();
      await storage.close();
      await engine?.release();
    },
  };
}

function requireModelFolder(folder: string | undefined): string {
  if (!folder) throw new Error('queue.backend "local" needs a model folder');
  return folder;
}
