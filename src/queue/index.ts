// The queue layer's public API: what the Discord side and the CLI import. Nothing here knows about Discord.
export * from './types.js';
export * from './errors.js';
export { Storage, DEFAULT_SQLITE_PATH, type StorageOptions, type StorageKind } from './storage.js';
export { JobStore, type JobStoreOptions } from './job-store.js';
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
export { RedisWorker, resolveTimings, type RedisWorkerOptions, type RedisTimings } from './redis/worker.js';
export { readWorkers } from './redis/dispatcher.js';
export { DEFAULT_KEY_PREFIX, redisKeys, connectionFor } from './redis/protocol.js';
