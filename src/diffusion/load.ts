import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { ModelFileError } from './errors.js';
import { loadStableDiffusionModel } from './model.js';
import { LoraLibrary } from './lora/library.js';
import { StableDiffusionPipeline, type DeviceLoopMode } from './pipeline.js';
import { loadEmbeddingsFolder } from './textual-inversion.js';
import { keepsOutputsOnDevice, openSession, resolveProvider, type ProviderChoice } from './providers.js';

export interface LoadPipelineOptions {
  provider: ProviderChoice;
  safetyChecker?: boolean;
  /** The pipeline's default denoising loop (see DeviceLoopMode; default auto). */
  deviceLoop?: DeviceLoopMode;
  /** Pin the UNet's input shapes to each generation's (PipelineOptions.pinUnetShapes; default false). */
  pinUnetShapes?: boolean;
  /** Fuse the UNet's and the VAE decoder's attention blocks into MultiHeadAttention (fuse-attention.ts; default false). */
  fuseAttention?: boolean;
  /** GPU index for CUDA (`imagine-bot worker --device N`); default 0. */
  deviceId?: number;
  /** ORT's CPU threads per session; default every CPU the process may use (the workers benchmark sets 1). */
  intraOpNumThreads?: number;
  /**
   * A folder of textual-inversion embeddings (`.safetensors`, `.pt`, `.bin`; textual-inversion.ts) to add to the text
   * encoder; a file that cannot be used is skipped with a log line. Absent: none.
   */
  embeddingsDir?: string;
  /** Lines about what could not be used (an embedding file skipped, a rewrite that does not apply); default `log`. */
  warn?: (line: string) => void;
  /** Continuous batching: the most UNet rows overlapping generations share (PipelineOptions.maxBatchRows; default 1). */
  maxBatchRows?: number;
  /** The folder of LoRA files for `<lora:name:w>` (config `model.loraDir`); none: no LoRAs. */
  loraDir?: string | null;
  /** Merged LoRA sets kept open (config `model.loraCacheSize`; default 2). */
  loraCacheSize?: number;
  /** One line per event: provider chosen (and why others failed), each part loaded, total load time. */
  log?: (line: string) => void;
}

/**
 * Loads a model folder once onto the chosen execution provider. Providers are probed with a tiny in-memory model
 * (instant), so no part of the model is read twice; a part the provider cannot run fails with its file named.
 */
export async function loadPipeline(folder: string, options: LoadPipelineOptions): Promise<StableDiffusionPipeline> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  // Check the folder before probing providers with its files, so a wrong path reads as one.
  const isFolder = await stat(folder).then((info) => info.isDirectory(), () => false);
  if (!isFolder) throw new ModelFileError(folder, 'model folder does not exist');
  const device = options.deviceId !== undefined ? { deviceId: options.deviceId } : {};
  const { provider } = await resolveProvider(options.provider, null, log, device);
  const deviceLoop = options.deviceLoop ?? 'auto';
  // Where the provider can keep outputs on the device (WebGPU), the UNet leaves its output there for the device loop
  // to feed to the step graph; the JS stepper reads it back each step (steppers.ts, unet-runner.ts). Other parts return to the CPU.
  const unetOutputsOnDevice = keepsOutputsOnDevice(provider) && deviceLoop !== 'never';
  const partOf = (file: string): string => basename(dirname(file));
  const warn = options.warn ?? log;
  const { embeddings } = options.embeddingsDir ? await loadEmbeddingsFolder(options.embeddingsDir, warn) : { embeddings: [] };
  const model = await loadStableDiffusionModel(folder, {
    createSession: (file, pinnedShapes, edit, modelRewrite) =>
      openSession(file, provider, {
        edit,
        ...(modelRewrite ? { modelRewrite } : {}),
        ...device,
        ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
        preferGpuOutputs: unetOutputsOnDevice && partOf(file) === 'unet' ? true : undefined,
        pinnedShapes,
        fuseAttention: (options.fuseAttention ?? false) && ['unet', 'vae_decoder'].includes(partOf(file)),
        clipSkipOutputs: partOf(file) === 'text_encoder',
        latentParameters: partOf(file) === 'vae_encoder',
        log: (line) => log(`${partOf(file)}: ${line}`),
      }),
    safetyChecker: options.safetyChecker,
    textualInversions: embeddings,
    warn: (line) => warn(`text_encoder: ${line}`),
    onProgress: ({ part, index, total }) => log(`loading ${part} (${index + 1}/${total}) on ${provider}`),
  });
  if (model.embeddings.embeddings.length > 0) {
    log(`textual-inversion embeddings: ${model.embeddings.embeddings.map((embedding) => `${embedding.name} (${embedding.vectorCount})`).join(', ')}`);
  }
  log(`model ${model.name} loaded on ${provider} in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  return new StableDiffusionPipeline(model, {
    provider,
    deviceLoop,
    log,
    pinUnetShapes: options.pinUnetShapes ?? false,
    maxBatchRows: options.maxBatchRows ?? 1,
    loras: { library: new LoraLibrary(options.loraDir ?? null), ...(options.loraCacheSize !== undefined ? { cacheSize: options.loraCacheSize } : {}) },
  });
}
