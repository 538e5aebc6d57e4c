import { stat } from 'node:fs/promises';
import { ModelFileError } from './errors.js';
import { loadStableDiffusionModel } from './model.js';
import { StableDiffusionPipeline } from './pipeline.js';
import { openSession, resolveProvider, type ProviderChoice, type ProviderName } from './providers.js';

export interface LoadPipelineOptions {
  provider: ProviderChoice;
  safetyChecker?: boolean;
  /** One line per event: provider chosen (and why others failed), each part loaded, total load time. */
  log?: (line: string) => void;
}

/**
 * Loads a model folder once onto the chosen execution provider. Providers are probed with a tiny in-memory model
 * (instant), so no part of the model is read twice; a part the provider cannot run fails with its file named.
 */
export async function loadPipeline(folder: string, options: LoadPipelineOptions): Promise<StableDiffusionPipeline & { provider: ProviderName }> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  // Check the folder before probing providers with its files, so a wrong path reads as one.
  const isFolder = await stat(folder).then((info) => info.isDirectory(), () => false);
  if (!isFolder) throw new ModelFileError(folder, 'model folder does not exist');
  const { provider } = await resolveProvider(options.provider, null, log);
  const model = await loadStableDiffusionModel(folder, {
    createSession: (file) => openSession(file, provider),
    safetyChecker: options.safetyChecker,
    onProgress: ({ part, index, total }) => log(`loading ${part} (${index + 1}/${total}) on ${provider}`),
  });
  log(`model ${model.name} loaded on ${provider} in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  return Object.assign(new StableDiffusionPipeline(model), { provider });
}
