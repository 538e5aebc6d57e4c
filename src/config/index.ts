export { loadConfig, loadEnv, ConfigError, ENV_SETTINGS, defaultConfigPath, defaultHubCacheDir } from './load.js';
export type { LoadConfigOptions } from './load.js';
export type { Config } from './schema.js';
export { configSchema, parseSize, SNOWFLAKE, PROVIDERS, RNG_DEVICES, NSFW_POLICIES, PREVIEW_FORMATS, LOG_LEVELS, type NsfwPolicy } from './schema.js';
