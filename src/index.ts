/**
 * imagine-bot as a library: the Stable Diffusion 1.5 engine without the bot, as `import … from 'imagine-bot'`
 * (package.json `exports`; README "Use the engine as a library" has an example, which test/library runs).
 *
 * Load a model folder in diffusers' ONNX layout with `loadPipeline`, call `pipeline.generate(request)` for images
 * identical to diffusers' for the same seed, and write them with `encodePng` and A1111's `parameters` infotext.
 * Errors a caller can act on are `ImagineError`s (`InvalidRequestError`, `ModelFileError`, `CancelledError`, …),
 * each with a one-line message.
 */

// Loading a model and generating.
export { loadPipeline, type LoadPipelineOptions } from './diffusion/load.js';
export {
  DEFAULT_CFG,
  DEFAULT_STEPS,
  DEFAULT_STRENGTH,
  DEVICE_LOOP_MODES,
  HIRES_FIX_SCALE,
  HIRES_FIX_STRENGTH,
  MAX_BATCH,
  MAX_STEPS,
  StableDiffusionPipeline,
  hiresFixRequest,
  imageCountOf,
  imageSeedOf,
  latentShapeOf,
  requestedStepOf,
  validateRequest,
  validateStrength,
  type DeviceLoopMode,
  type GenerateOptions,
  type GeneratedImage,
  type GenerationRequest,
  type GenerationResult,
  type GenerationTimings,
  type InitImage,
  type LatentShape,
  type PipelineOptions,
  type StepInfo,
  type StepProgress,
} from './diffusion/pipeline.js';
export type { StableDiffusionModel } from './diffusion/model.js';
export { PROVIDER_CHOICES, parseProviderChoice, type ProviderChoice, type ProviderName } from './diffusion/providers.js';

// Schedulers (samplers).
export {
  KARRAS_CAPABLE,
  SCHEDULER_CLASS_NAMES,
  SCHEDULER_NAMES,
  SCHEDULER_REGISTRY,
  TIMESTEP_SPACINGS,
  createScheduler,
  parseSchedulerName,
  parseTimestepSpacing,
  schedulerDisplayName,
  schedulerNameForClass,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerName,
  type SchedulerOptions,
  type SchedulerRegistration,
  type TimestepSpacing,
} from './diffusion/schedulers/index.js';

// Seeds and torch-compatible noise.
export { MAX_SEED, RNG_DEVICES, createImageNoise, createNoiseGenerator, PerImageGenerators, parseSeed, randomSeed, type NoiseGenerator, type RngDevice } from './diffusion/rng/index.js';

// Textual-inversion embeddings (loadPipeline's `embeddingsDir` loads a folder of them into the text encoder).
export { loadEmbeddingsFolder, shortHash, type EmbeddingsFolder, type TextualInversion } from './diffusion/textual-inversion.js';

// PNG output with A1111's `parameters` chunk, and latent previews.
export { encodePng, formatInfotext, generationInfotext, readTextChunks, tiHashesInfotext, type InfotextFields } from './diffusion/png.js';
export { encodeBatchPreview, encodeLatentPreview, latentsToRgb, LatentPreviewRenderer, type PreviewOptions, type PreviewRendererOptions } from './diffusion/preview.js';
export { TaesdDecoder, type RgbImage } from './diffusion/taesd.js';

// LoRA (`<lora:name:w>` in a1111 prompts, LoadPipelineOptions.loraDir; docs/lora.md).
export { LoraLibrary, UnknownLoraError, shortLoraHash, type LoraFile } from './diffusion/lora/library.js';
export { extractExtraNetworks, type ExtraNetworkPrompt, type LoraTag } from './diffusion/lora/tags.js';
export { loraHashesInfotext } from './diffusion/png.js';
export type { UsedLora } from './diffusion/pipeline.js';

// Errors.
export { CancelledError, ImagineError, InvalidRequestError, ModelFileError, isImagineError } from './errors.js';
export { InvalidProviderError, ProviderUnavailableError } from './diffusion/providers.js';
