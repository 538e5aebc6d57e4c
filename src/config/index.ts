export { loadConfig, loadEnv, ConfigError, ENV_SETTINGS, defaultConfigPath, defaultHubCacheDir } from './load.js';
export type { LoadConfigOptions } from './load.js';
export type { Config } from './schema.js';
export { configSchema, parseSize, SNOWFLAKE, PROVIDERS, RNG_DEVICES, NSFW_POLICIES, PREVIEW_FORMATS, LOG_LEVELS, ENGINE_ISOLATIONS, SECRET_KEYS, type NsfwPolicy } from './schema.js';
