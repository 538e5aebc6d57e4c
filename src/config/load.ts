/**
 * Loads Imagine's configuration from, in increasing priority:
 *   1. config/default.json (shipped with the program: every key, with its default),
 *   2. the override file: --config FILE or IMAGINE_CONFIG if given (it must exist), else config/local.json if present,
 *   3. the environment, with .env (dotenv) filling in what the real environment does not set.
 * Then validates the merged result and throws one ConfigError listing every problem, one line each, naming the
 * file or variable the wrong value came from. Synchronous: it runs once at start, before anything else.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseDotenv } from 'dotenv';
import type { z } from 'zod';
import { ImagineError } from '../errors.js';
import { KARRAS_SCHEDULERS } from '../diffusion/schedulers/types.js';
import { configSchema, SECRET_KEYS, type Config } from './schema.js';

export type { Config } from './schema.js';

/** Every problem found in the configuration, one line each. */
export class ConfigError extends ImagineError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('config', problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadConfigOptions {
  /** An override file to use instead of config/local.json (the CLI's --config). Beats IMAGINE_CONFIG. */
  configPath?: string;
  /** The environment; default process.env. Values from <cwd>/.env fill in what it does not set. */
  env?: Record<string, string | undefined>;
  /** Where config/local.json, .env and relative paths are looked up; default process.cwd(). */
  cwd?: string;
}

/** Environment variables and the setting each one sets. Documented in .env.example. */
export const ENV_SETTINGS: ReadonlyArray<{ env: string; path: string }> = [
  { env: 'DISCORD_TOKEN', path: 'discord.token' },
  { env: 'DISCORD_APP_ID', path: 'discord.appId' },
  { env: 'DISCORD_API_BASE', path: 'discord.apiBase' },
  { env: 'DISCORD_CDN_BASE', path: 'discord.cdnBase' },
  { env: 'DISCORD_DEV_GUILD_ID', path: 'discord.devGuildId' },
  { env: 'IMAGINE_SHARDS', path: 'discord.shards' },
  { env: 'IMAGINE_SHARD_COUNT', path: 'discord.shardCount' },
  { env: 'IMAGINE_MODEL', path: 'model.path' },
  { env: 'IMAGINE_PROVIDER', path: 'model.provider' },
  { env: 'IMAGINE_PREVIEW_DECODER', path: 'model.previewDecoder' },
  { env: 'IMAGINE_LORA_DIR', path: 'model.loraDir' },
  { env: 'IMAGINE_DATA_DIR', path: 'storage.dataDir' },
  { env: 'KEYV_URL', path: 'storage.keyvUrl' },
  { env: 'IMAGINE_QUEUE_BACKEND', path: 'queue.backend' },
  { env: 'REDIS_URL', path: 'queue.redisUrl' },
  { env: 'HF_ENDPOINT', path: 'hub.endpoint' },
  { env: 'HF_HUB_CACHE', path: 'hub.cacheDir' },
  { env: 'HF_TOKEN', path: 'hub.token' },
  { env: 'LOG_LEVEL', path: 'log.level' },
];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The folder that holds package.json and config/default.json, found from this file (src/ or dist/src/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'config', 'default.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new ImagineError('config', 'config/default.json not found next to the program.');
    dir = parent;
  }
}

export function defaultConfigPath(): string {
  return join(packageRoot(), 'config', 'default.json');
}

/** Reads <cwd>/.env (if any) under the given environment: variables already set win, as with dotenv. */
export function loadEnv(options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Record<string, string | undefined> {
  const env = options.env ?? process.env;
  const envFile = join(options.cwd ?? process.cwd(), '.env');
  const fromFile = existsSync(envFile) ? parseDotenv(readFileSync(envFile)) : {};
  const merged: Record<string, string | undefined> = { ...fromFile };
  for (const [key, value] of Object.entries(env)) if (value !== undefined) merged[key] = value;
  return merged;
}

interface Layer {
  /** How the source is named in messages: a path relative to cwd, or "env NAME". */
  label: string;
  values: JsonObject;
}

function readJsonLayer(file: string, label: string, problems: string[]): Layer | undefined {
  let textContent: string;
  try {
    textContent = readFileSync(file, 'utf8');
  } catch (error) {
    problems.push(`${label}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(textContent);
  } catch (error) {
    problems.push(`${label}: is not valid JSON (${(error as Error).message})`);
    return undefined;
  }
  if (!isObject(parsed)) {
    problems.push(`${label}: must contain a JSON object ({ … })`);
    return undefined;
  }
  // Secrets in a JSON file end up in git and in bug reports: refuse them outright.
  for (const secret of SECRET_KEYS) {
    const [section, key] = secret.path.split('.') as [string, string];
    const holder = parsed[section];
    if (isObject(holder) && key in holder) {
      problems.push(`${label}: ${secret.path} must not be set in a JSON file: put ${secret.env}=… in .env instead`);
      delete holder[key];
    }
  }
  return { label, values: parsed };
}

function setPath(target: JsonObject, path: string, value: Json): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (!isObject(next)) node[key] = {};
    node = node[key] as JsonObject;
  }
  node[keys[keys.length - 1]!] = value;
}

function getPath(target: unknown, path: readonly PropertyKey[]): unknown {
  let node = target;
  for (const key of path) {
    if (isObject(node) || Array.isArray(node)) node = (node as Record<PropertyKey, unknown>)[key as string];
    else return undefined;
  }
  return node;
}

/** Deep-merges `layer` into `target` (arrays and scalars replace), recording which layer set each leaf. */
function mergeLayer(target: JsonObject, layer: JsonObject, label: string, origins: Map<string, string>, prefix = ''): void {
  for (const [key, value] of Object.entries(layer)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const existing = target[key];
    if (isObject(value) && isObject(existing)) {
      mergeLayer(existing, value, label, origins, path);
    } else {
      target[key] = structuredClone(value);
      origins.set(path, label);
      // A replaced subtree's leaves now come from this layer too.
      for (const known of [...origins.keys()]) if (known.startsWith(`${path}.`)) origins.set(known, label);
    }
  }
}

function originOf(path: string, origins: Map<string, string>, fallback: string): string {
  for (let candidate = path; candidate; candidate = candidate.slice(0, Math.max(0, candidate.lastIndexOf('.')))) {
    const origin = origins.get(candidate);
    if (origin) return origin;
  }
  return fallback;
}

function describeValue(value: unknown): string {
  const shown = JSON.stringify(value);
  return shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
}

function describeIssue(issue: z.core.$ZodIssue, merged: JsonObject, origins: Map<string, string>, defaultsLabel: string): string[] {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const full = path ? `${path}.${key}` : key;
      return `${originOf(full, origins, defaultsLabel)}: ${full} is not a known setting (see config/README.md)`;
    });
  }
  const value = getPath(merged, issue.path);
  const origin = originOf(path, origins, defaultsLabel);
  if (issue.code === 'invalid_type' && issue.expected === 'object') {
    return [`${origin}: ${path || 'the file'} must be an object of settings ({ … })${value === undefined ? '' : ` (got ${describeValue(value)})`}`];
  }
  if (value === undefined) return [`${origin}: ${path} is missing (it ${issue.message})`];
  // Never echo a secret back, even a malformed one.
  const secret = path.endsWith('.token');
  return [`${origin}: ${path} ${issue.message}${secret ? '' : ` (got ${describeValue(value)})`}`];
}

/** Checks that involve two settings at once, after each has passed its own rule. */
function crossChecks(config: z.infer<typeof configSchema>, origins: Map<string, string>, defaultsLabel: string): string[] {
  const problems: string[] = [];
  const at = (path: string) => originOf(path, origins, defaultsLabel);
  const { defaults, limits } = config.generation;
  if (defaults.steps > limits.maxSteps)
    problems.push(`${at('generation.defaults.steps')}: generation.defaults.steps must not exceed generation.limits.maxSteps (${limits.maxSteps}) (got ${defaults.steps})`);
  if (defaults.cfg > limits.maxCfg)
    problems.push(`${at('generation.defaults.cfg')}: generation.defaults.cfg must not exceed generation.limits.maxCfg (${limits.maxCfg}) (got ${defaults.cfg})`);
  if (!limits.sizes.includes(defaults.size))
    problems.push(`${at('generation.defaults.size')}: generation.defaults.size must be one of generation.limits.sizes (${limits.sizes.join(', ')}) (got "${defaults.size}")`);
  if (defaults.karras && !(KARRAS_SCHEDULERS as readonly (string | null)[]).includes(defaults.scheduler))
    problems.push(`${at('generation.defaults.karras')}: generation.defaults.karras needs generation.defaults.scheduler set to one of ${KARRAS_SCHEDULERS.join(', ')}, the schedulers with a Karras variant (got ${JSON.stringify(defaults.scheduler)})`);
  // Pinned UNet shapes leave the pipeline without its batcher, and the queue would then overlap unbatched jobs.
  if (config.worker.maxBatch > 1 && config.model.pinUnetShapes)
    problems.push(`${at('worker.maxBatch')}: worker.maxBatch above 1 (continuous batching) cannot run with model.pinUnetShapes, which pins the UNet batch: set one of them back (got maxBatch ${config.worker.maxBatch})`);
  if (config.queue.backend === 'redis' && config.queue.redisUrl === '')
    problems.push(`${at('queue.backend')}: queue.backend "redis" needs queue.redisUrl: set REDIS_URL=redis://host:6379 (the Redis the workers use)`);
  return problems;
}

/** The Hub cache folder the way huggingface_hub finds it: HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub. */
export function defaultHubCacheDir(env: Record<string, string | undefined> = process.env): string {
  const set = (name: string) => (env[name] ? env[name] : undefined);
  const explicit = set('HF_HUB_CACHE') ?? set('HUGGINGFACE_HUB_CACHE');
  if (explicit) return explicit;
  const home = set('HF_HOME') ?? join(set('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const cwd = resolve(options.cwd ?? process.cwd());
  const env = loadEnv({ env: options.env ?? process.env, cwd });
  const problems: string[] = [];
  const label = (file: string) => {
    const rel = relative(cwd, file);
    return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
  };

  const defaultsFile = defaultConfigPath();
  const defaultsLabel = label(defaultsFile);
  const layers: Layer[] = [];
  const defaults = readJsonLayer(defaultsFile, defaultsLabel, problems);
  if (defaults) layers.push(defaults);

  const explicit = options.configPath ?? (env['IMAGINE_CONFIG'] || undefined);
  if (explicit) {
    const file = resolve(cwd, explicit);
    if (!existsSync(file) || !statSync(file).isFile()) {
      const via = options.configPath ? '--config' : 'IMAGINE_CONFIG';
      problems.push(`${via} ${explicit}: file not found`);
    } else {
      const layer = readJsonLayer(file, label(file), problems);
      if (layer) layers.push(layer);
    }
  } else {
    const local = join(cwd, 'config', 'local.json');
    if (existsSync(local)) {
      const layer = readJsonLayer(local, label(local), problems);
      if (layer) layers.push(layer);
    }
  }

  const fromEnv: JsonObject = {};
  const envOrigins = new Map<string, string>();
  for (const { env: name, path } of ENV_SETTINGS) {
    const value = env[name];
    // An empty value (DISCORD_TOKEN= in a fresh .env) means "not set".
    if (value === undefined || value.trim() === '') continue;
    setPath(fromEnv, path, value.trim());
    envOrigins.set(path, `env ${name}`);
  }

  const merged: JsonObject = {};
  const origins = new Map<string, string>();
  for (const layer of layers) mergeLayer(merged, layer.values, layer.label, origins);
  mergeLayer(merged, fromEnv, 'env', origins);
  for (const [path, origin] of envOrigins) origins.set(path, origin);

  const result = configSchema.safeParse(merged);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(...describeIssue(issue, merged, origins, defaultsLabel));
  } else {
    problems.push(...crossChecks(result.data, origins, defaultsLabel));
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);

  const parsed = result.data;
  const dataDir = resolve(cwd, parsed.storage.dataDir);
  return {
    ...parsed,
    model: {
      ...parsed.model,
      embeddingsDir: parsed.model.embeddingsDir ? resolve(cwd, parsed.model.embeddingsDir) : '',
      loraDir: parsed.model.loraDir ? resolve(cwd, parsed.model.loraDir) : '',
    },
    storage: {
      ...parsed.storage,
      dataDir,
      sqlitePath: parsed.storage.sqlitePath ? resolve(cwd, parsed.storage.sqlitePath) : join(dataDir, 'imagine.sqlite'),
    },
    hub: {
      ...parsed.hub,
      endpoint: parsed.hub.endpoint.replace(/\/+$/, ''),
      cacheDir: resolve(cwd, parsed.hub.cacheDir || defaultHubCacheDir(env)),
    },
  };
}
