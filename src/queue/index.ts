// The queue layer's entry: the one module the layers above (discord/, app/) import from it (scripts/check-deps.mjs
// enforces this). Nothing here knows about Discord.
export * from './types.js';
export * from './errors.js';
export { Storage, DEFAULT_SQLITE_PATH, type StorageOptions, type StorageKind } from './storage.js';
export { JobStore, lineageOf, type JobStoreOptions } from './job-store.js';
export {
  FileInputImageStore,
  INPUT_IMAGE_TTL_MS,
  InputImageGoneError,
  RedisInputImageStore,
  inputImageRef,
  withInputImages,
  type InputImageStore,
} from './inputs.js';
export { LocalJobQueue, canActOn, toGenerationRequest, type LocalJobQueueOptions } from './local-queue.js';
export { FairScheduler, type SchedulableJob } from './fair-scheduler.js';
export { newJobId, JOB_ID_PATTERN } from './ids.js';
export {
  GuildSettingsStore,
  FALLBACK_GUILD_SETTINGS,
  NSFW_POLICIES,
  SETTINGS_VERSION,
  validateSettings,
  migrateStoredSettings,
  normaliseSize,
  type GuildSettings,
  type GuildSettingsPatch,
  type GuildSettingsStoreOptions,
  type ListName,
  type NsfwPolicy,
} from './settings.js';
export { Blocklist, BlocklistSyntaxError, compileBlocklistEntry, type BlocklistMatch } from './blocklist.js';
export {
  Admission,
  applyLimits,
  mergeNegative,
  type AdmissionContext,
  type AdmissionOptions,
  type AdmissionResult,
  type SubmitResult,
  type UsageSummary,
} from './admission.js';
export { RedisJobQueue, type RedisJobQueueOptions } from './redis/redis-queue.js';
export { RedisWorker, resolveTimings, timingsFromQueueConfig, type RedisWorkerOptions, type RedisTimings } from './redis/worker.js';
export { fetchFleet, readWorkers } from './redis/dispatcher.js';
export { DEFAULT_KEY_PREFIX, redisKeys, connectionFor } from './redis/protocol.js';

// What the bot needs to know of the engine, for the jobs it describes: seeds, sampler names, the latent preview of a
// progress event and the PNG text chunks of a result. The discord layer may not import the engine itself; the queue,
// whose JobParams and events carry these values, hands them on.
export { meansRandomSeed, parseSeed, randomSeed } from '../diffusion/rng/index.js';
export { SAMPLER_NAMES, SCHEDULER_NAMES, type SamplerName, type SchedulerName } from '../diffusion/schedulers/types.js';
export { asSamplerName, SAMPLER_REQUEST_DEFAULTS, samplerNameOf, samplerSettings, schedulerDisplayName } from '../diffusion/schedulers/index.js';
export { encodeBatchPreview, LatentPreviewRenderer, type PreviewOptions } from '../diffusion/preview.js';
export { insertTextChunks, readTextChunks } from '../diffusion/png.js';
export { DEFAULT_STRENGTH, HIRES_FIX_SCALE, HIRES_FIX_STRENGTH, validateStrength, type InitImage } from '../diffusion/request.js';
export { LoraLibrary, shortLoraHash, type LoraFile } from '../diffusion/lora/library.js';
export { extractExtraNetworks } from '../diffusion/lora/tags.js';
