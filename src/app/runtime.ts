/**
 * The composition root: puts the bot together from its parts and is the one place that chooses them.
 *
 *   engine (an ImageGenerator, in its own process: engine-process.ts) → queue backend (a JobQueue over the job
 *   store) → guild rules → discord.js bot
 *
 * `imagine-bot start` calls `startRuntime`; tests start the same thing as a child process through the CLI. The engine
 * is chosen in `startEngine` (the pipeline in a child process, or on this thread with `engine.isolation: "inline"`),
 * the queue backend in `createQueue`: `local`, the fair queue over keyv in this process feeding that engine, or
 * `redis`, BullMQ on Redis feeding `imagine-bot worker` processes (the bot then loads no model at all).
 */
import { join } from 'node:path';
import { parseSize, type Config } from '../config/index.js';
import { engineSetupFromConfig, openEngine, type Engine, type EngineSetup } from './engine.js';
import { EngineProcess } from './engine-process.js';
import { startLoopDelayMonitor } from './loop-delay.js';
import type { Logger } from '../log.js';
import {
  Admission,
  FileInputImageStore,
  GuildSettingsStore,
  JobStore,
  LocalJobQueue,
  RedisJobQueue,
  Storage,
  timingsFromQueueConfig,
  withInputImages,
  type InputImageStore,
  type JobQueue,
} from '../queue/index.js';
import { ImagineBot } from '../discord/bot.js';
import { createGuildRules, requestDefaults, settingsFromConfig } from '../discord/rules.js';
import { checkShardBackend, instanceNameOf, shardPlanOf } from '../discord/shards.js';

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

/**
 * What the engine is opened with: the configuration's model options, warmed up in the default job shape
 * (generation.defaults) so the first job does not pay for shader compilation and the like. `extra` picks the GPU and
 * ORT's threads (`imagine-bot worker --device N --threads N`).
 */
export function engineSetupFor(config: Config, modelFolder: string, extra: Pick<EngineSetup, 'deviceId' | 'intraOpNumThreads'> = {}): EngineSetup {
  const defaultSize = parseSize(config.generation.defaults.size);
  const warmUp = defaultSize
    ? { ...defaultSize, cfg: config.generation.defaults.cfg, scheduler: config.generation.defaults.scheduler, promptSyntax: config.generation.promptSyntax }
    : null;
  return { ...engineSetupFromConfig(config, modelFolder, warmUp), ...extra };
}

/** Loads the model in a child process of the bot, or on this thread with `engine.isolation: "inline"`. */
export async function startEngine(config: Config, log: Logger, modelFolder: string): Promise<Engine> {
  const setup = engineSetupFor(config, modelFolder);
  if (config.engine.isolation === 'inline') {
    return openEngine(setup, (line) => log.info({ module: 'engine' }, line), (line) => log.warn({ module: 'engine' }, line));
  }
  return EngineProcess.start({
    setup,
    log,
    stepTimeoutMs: config.engine.stepTimeoutSeconds * 1000,
    startTimeoutMs: config.engine.startTimeoutSeconds * 1000,
    niceness: config.engine.niceness,
  });
}

/**
 * The queue backend over the job store: with an engine, the local fair queue whose one worker runs it; without (backend
 * redis), the BullMQ queue whose jobs `imagine-bot worker` processes run.
 */
export function createQueue(config: Config, storage: Storage, engine: Engine | undefined, log: Logger, instance = ''): { queue: JobQueue; inputImages: InputImageStore } {
  const store = new JobStore(storage.namespace('jobs'), { instance, logger: log.child({ module: 'jobs' }) });
  const logger = log.child({ module: 'queue' });
  if (!engine) {
    const queue = new RedisJobQueue({ url: config.queue.redisUrl, store, ...timingsFromQueueConfig(config.queue), logger });
    return { queue, inputImages: queue.inputImages };
  }
  // img2img starting images wait under <dataDir>/inputs; the engine gets their bytes when the job runs.
  const inputImages = new FileInputImageStore(join(config.storage.dataDir, 'inputs'), { logger });
  const queue = new LocalJobQueue({
    store,
    generator: withInputImages(engine.generator, inputImages),
    identity: { model: engine.info.modelName, provider: engine.info.provider },
    logger,
    shutdownGraceMs: config.queue.shutdownGraceSeconds * 1000,
    maxBatchRows: config.worker.maxBatch,
  });
  return { queue, inputImages };
}

/** Where the bot keeps settings and job records: KEYV_URL, else (backend redis) the workers' Redis, else SQLite. */
function storageUrl(config: Config): string | undefined {
  if (config.storage.keyvUrl) return config.storage.keyvUrl;
  return config.queue.backend === 'redis' ? config.queue.redisUrl : undefined;
}

export async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, log } = options;
  // Several bot processes (a share of the shards each) only over Redis; each keeps its own job index and outbox.
  const shardPlan = shardPlanOf(config.discord);
  checkShardBackend(shardPlan, config.queue.backend);
  const instance = instanceNameOf(shardPlan);
  // Storage first: a damaged store file is reported in a second, not after the model has loaded.
  const url = storageUrl(config);
  const storage = await Storage.open({ ...(url ? { url } : {}), sqlitePath: config.storage.sqlitePath, logger: log });
  log.info({ storage: storage.kind, location: storage.location }, 'storage opened');
  // Backend redis: the workers load the model, the bot only queues; backend local: the bot runs it.
  let engine: Engine | undefined;
  try {
    engine = config.queue.backend === 'local' ? await startEngine(config, log, requireModelFolder(options.modelFolder)) : undefined;
  } catch (error) {
    await storage.close().catch(() => undefined);
    throw error;
  }
  const defaults = requestDefaults(config, engine?.info.modelScheduler ?? 'pndm');
  const stopLoopDelayMonitor = startLoopDelayMonitor(log);
  const { queue, inputImages } = createQueue(config, storage, engine, log, instance);
  if (!engine) log.info('queue backend redis: jobs run on imagine-bot worker processes');

  const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: settingsFromConfig(config), logger: log.child({ module: 'settings' }) });
  const admission = new Admission({ settings, usage: storage.namespace('usage'), queue, maxTotal: config.queue.maxTotal, logger: log.child({ module: 'admission' }) });
  const rules = createGuildRules({ settings, admission, defaults });
  const bot = new ImagineBot({
    config,
    log,
    queue,
    rules,
    engine: engine ? { modelName: engine.info.modelName, provider: engine.info.provider } : { modelName: "the workers' model", provider: 'Redis workers' },
    deliveries: storage.namespace(instance === '' ? 'deliveries' : `deliveries:${instance}`),
    inputImages,
    registerCommands: options.deployCommands,
    shardReportIntervalMs: config.queue.workerHeartbeatMs,
  });
  try {
    await bot.start();
  } catch (error) {
    await bot.stop().catch(() => undefined);
    await storage.close().catch(() => undefined);
    await engine?.close().catch(() => undefined);
    stopLoopDelayMonitor();
    throw error;
  }
  return {
    bot,
    async stop() {
      await bot.stop();
      await storage.close();
      await engine?.close();
      stopLoopDelayMonitor();
    },
  };
}

function requireModelFolder(folder: string | undefined): string {
  if (!folder) throw new Error('queue.backend "local" needs a model folder');
  return folder;
}
