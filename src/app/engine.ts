/**
 * Opening the engine: load the model, warm it up in the default job shape, and put it behind the queue's
 * ImageGenerator contract. The same code runs in the engine's child process (engine-child.ts, the default) and,
 * with `engine.isolation: "inline"`, on the bot's own thread.
 */
import type { Config } from '../config/index.js';
import { loadPipeline } from '../diffusion/load.js';
import type { ProviderChoice } from '../diffusion/providers.js';
import { embeddingsFolderFor } from '../diffusion/textual-inversion.js';
import { schedulerNameForClass } from '../diffusion/schedulers/index.js';
import type { PromptSyntax } from '../diffusion/pipeline.js';
import type { SchedulerName } from '../diffusion/schedulers/types.js';
import { PipelineImageGenerator } from './engine-adapter.js';
import type { ImageGenerator } from '../queue/index.js';

/**
 * Everything the engine needs, and nothing more: it is sent to the child process as is, so it holds no secret (no
 * token crosses to the engine) and only plain data.
 */
export interface EngineSetup {
  modelFolder: string;
  provider: ProviderChoice;
  safetyChecker: boolean;
  pinUnetShapes: boolean;
  fuseAttention: boolean;
  /** model.embeddingsDir; "" or absent = the model folder's embeddings/. */
  embeddingsDir?: string;
  /** model.loraDir ("" or absent: no LoRAs) and model.loraCacheSize. */
  loraDir?: string;
  loraCacheSize?: number;
  previewIntervalMs: number;
  /** GPU index for CUDA (`imagine-bot worker --device N`); undefined = the provider's default (0). */
  deviceId?: number;
  /** ORT's CPU threads per session; undefined = every CPU the process may use (the workers benchmark sets 1). */
  intraOpNumThreads?: number;
  /** Continuous batching: the most UNet rows overlapping jobs share (config worker.maxBatch; 1 = one job at a time). */
  maxBatch?: number;
  /** The default job shape to warm up with; scheduler null = the model's own. Null: no warm-up. */
  warmUp: { width: number; height: number; cfg: number; scheduler: SchedulerName | null; promptSyntax?: PromptSyntax } | null;
}

/** What the rest of the bot learns about the loaded engine. */
export interface EngineInfo {
  modelName: string;
  provider: string;
  /** The scheduler the model's scheduler_config.json names (the default when the config names none). */
  modelScheduler: SchedulerName;
}

/** A loaded engine, wherever it runs. */
export interface Engine {
  readonly info: EngineInfo;
  readonly generator: ImageGenerator;
  close(): Promise<void>;
}

/** The setup the configuration describes; `warmUp` is the default job shape (config.generation.defaults). */
export function engineSetupFromConfig(config: Config, modelFolder: string, warmUp: EngineSetup['warmUp']): EngineSetup {
  return {
    modelFolder,
    provider: config.model.provider,
    safetyChecker: config.model.safetyChecker,
    pinUnetShapes: config.model.pinUnetShapes,
    fuseAttention: config.model.fuseAttention,
    embeddingsDir: config.model.embeddingsDir,
    loraDir: config.model.loraDir,
    loraCacheSize: config.model.loraCacheSize,
    previewIntervalMs: config.preview.minIntervalMs,
    maxBatch: config.worker.maxBatch,
    warmUp,
  };
}

/**
 * Loads and warms up the pipeline in this thread. `log` gets the loader's and the pipeline's lines, `warn` what the
 * loader could not use (embedding files skipped); default `log`.
 */
export async function openEngine(setup: EngineSetup, log: (line: string) => void, warn: (line: string) => void = log): Promise<Engine> {
  const pipeline = await loadPipeline(setup.modelFolder, {
    provider: setup.provider,
    safetyChecker: setup.safetyChecker,
    pinUnetShapes: setup.pinUnetShapes,
    fuseAttention: setup.fuseAttention,
    embeddingsDir: embeddingsFolderFor(setup.embeddingsDir, setup.modelFolder),
    warn,
    loraDir: setup.loraDir || null,
    ...(setup.loraCacheSize !== undefined ? { loraCacheSize: setup.loraCacheSize } : {}),
    ...(setup.deviceId !== undefined ? { deviceId: setup.deviceId } : {}),
    ...(setup.intraOpNumThreads !== undefined ? { intraOpNumThreads: setup.intraOpNumThreads } : {}),
    ...(setup.maxBatch !== undefined ? { maxBatchRows: setup.maxBatch } : {}),
    log,
  });
  const release = async () => {
    await pipeline.release();
    await pipeline.model.release();
  };
  const modelScheduler = schedulerNameForClass(String(pipeline.model.schedulerConfig._class_name ?? '')) ?? 'pndm';
  // Before the first job: a job in the default shape should not pay for shader compilation and the like.
  if (setup.warmUp) {
    const { scheduler, ...shape } = setup.warmUp;
    try {
      await pipeline.warmUp({ ...shape, scheduler: scheduler ?? modelScheduler, safetyCheck: setup.safetyChecker });
    } catch (error) {
      await release();
      throw error;
    }
  }
  return {
    info: { modelName: pipeline.model.name, provider: pipeline.provider, modelScheduler },
    generator: new PipelineImageGenerator(pipeline, { safetyCheck: setup.safetyChecker, previewIntervalMs: setup.previewIntervalMs }),
    close: release,
  };
}
