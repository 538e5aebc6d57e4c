/**
 * The shape of Imagine's configuration, with the rule for every value written as a sentence fragment
 * ("must be an integer between 1 and 150") so the loader can print one readable line per problem.
 *
 * Defaults live in config/default.json, not here: one place to read them, and the file documents itself.
 */
import { z } from 'zod';
import { MAX_CLIP_SKIP } from '../diffusion/clip-skip.js';
import { PROMPT_SYNTAXES } from '../diffusion/prompt/index.js';
import { RNG_DEVICES } from '../diffusion/rng/types.js';
import { SCHEDULER_NAMES } from '../diffusion/schedulers/types.js';

/** Every schema built here carries this one message for every way a value can be wrong. */
function rule<T extends z.ZodType>(schema: (message: { error: string }) => T, message: string): T {
  return schema({ error: message });
}

const intBetween = (min: number, max: number) =>
  rule((m) => z.int(m).min(min, m).max(max, m), `must be an integer between ${min} and ${max}`);

const numberBetween = (min: number, max: number) =>
  rule((m) => z.number(m).min(min, m).max(max, m), `must be a number between ${min} and ${max}`);

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  rule((m) => z.enum(values, m), `must be one of ${values.join(', ')}`);

const bool = () => rule((m) => z.boolean(m), 'must be true or false');

const text = () => rule((m) => z.string(m), 'must be a string');

const nonEmptyText = () => rule((m) => z.string(m).min(1, m), 'must be a non-empty string');

const httpUrl = () =>
  rule(
    (m) => z.string(m).regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, m),
    'must be an http(s) URL such as https://discord.com/api',
  );

/** Discord ids are 64-bit integers written in decimal, 17 to 20 digits for anything created since 2015. */
export const SNOWFLAKE = /^\d{17,20}$/;
const snowflake = () => rule((m) => z.string(m).regex(SNOWFLAKE, m), 'must be a Discord id (17 to 20 digits)');

/** "512x768": width x height, both multiples of 8 (the VAE downsamples by 8) between 64 and 2048. */
export const SIZE_PATTERN = /^(\d+)x(\d+)$/;
export function parseSize(size: string): { width: number; height: number } | undefined {
  const match = SIZE_PATTERN.exec(size);
  if (!match) return undefined;
  const width = Number(match[1]);
  const height = Number(match[2]);
  const ok = (side: number) => side >= 64 && side <= 2048 && side % 8 === 0;
  return ok(width) && ok(height) ? { width, height } : undefined;
}
const imageSize = () =>
  rule(
    (m) => z.string(m).refine((value) => parseSize(value) !== undefined, m),
    'must be WIDTHxHEIGHT with both sides multiples of 8 between 64 and 2048, e.g. "512x512"',
  );

export const PROVIDERS = ['auto', 'cuda', 'webgpu', 'cpu'] as const;
export { RNG_DEVICES };
/** What happens to an image the safety checker flags; the guild settings and the bot use this one list. */
export const NSFW_POLICIES = ['spoiler', 'blur', 'withhold'] as const;
export type NsfwPolicy = (typeof NSFW_POLICIES)[number];
/** Where jobs run: `local` = one pipeline in the bot process; `redis` = `imagine-bot worker` processes via BullMQ. */
export const QUEUE_BACKENDS = ['local', 'redis'] as const;
export const PREVIEW_FORMATS = ['webp', 'jpeg'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** Where the pipeline runs: a child process of the bot (default), or the bot's own thread (debugging, comparisons). */
export const ENGINE_ISOLATIONS = ['process', 'inline'] as const;

export const configSchema = z.strictObject({
  discord: z.strictObject({
    /** Only ever from the environment (DISCORD_TOKEN); absent until the owner has created the application. */
    token: nonEmptyText().optional(),
    /** Only ever from the environment (DISCORD_APP_ID). */
    appId: snowflake().optional(),
    apiBase: httpUrl(),
    cdnBase: httpUrl(),
    /** Deploy slash commands to this one guild (instant) instead of globally (up to an hour). */
    devGuildId: rule((m) => z.union([z.null(m), z.string(m).regex(SNOWFLAKE, m)], m), 'must be null or a Discord id (17 to 20 digits)'),
    /**
     * The gateway shards this process runs: "auto" (all of them, as many as Discord recommends or `shardCount`), or
     * a list of shard ids (`[0, 1]`, or "0,1" from the environment / `start --shards`) for one of several processes.
     */
    shards: rule(
      (m) => z.union([z.literal('auto', m), z.array(z.int(m).min(0, m).max(65535, m), m).min(1, m), z.string(m).regex(/^\d{1,5}(,\d{1,5})*$/, m)], m),
      'must be "auto", a list of shard ids such as [0, 1], or "0,1"',
    ),
    /** How many shards the bot has in all, over every process: "auto" (Discord's recommendation) or a number. */
    shardCount: rule(
      (m) => z.union([z.literal('auto', m), z.int(m).min(1, m).max(65536, m), z.string(m).regex(/^[1-9]\d{0,4}$/, m)], m),
      'must be "auto" or a whole number of shards ≥ 1',
    ),
  }),
  model: z.strictObject({
    /** A model folder, or a Hugging Face repo id (owner/name[@revision]) resolved from the Hub cache; "" = none yet. */
    path: text(),
    provider: oneOf(PROVIDERS),
    safetyChecker: bool(),
    /** Pin the UNet's input shapes to each job's, reopening it when they change (pin-shapes.ts, docs/gpu.md). */
    pinUnetShapes: bool(),
    /** Fuse the UNet's and VAE decoder's attention into ORT's MultiHeadAttention (fuse-attention.ts, docs/gpu.md). */
    fuseAttention: bool(),
    /** A TAESD decoder (ONNX file, or a folder holding one) for live previews; "" = the colour map (preview.ts, taesd.ts). */
    previewDecoder: text(),
    /** Textual-inversion embeddings (.safetensors/.pt/.bin); "" = the model folder's embeddings/ when it has one. */
    embeddingsDir: text(),
    /** The folder of LoRA `.safetensors` files for `<lora:name:w>` in prompts (lora/library.ts); "" = no LoRAs. */
    loraDir: text(),
    /** How many merged LoRA sets the engine keeps open (each holds its own copy of the UNet's weights). */
    loraCacheSize: intBetween(1, 16),
  }),
  engine: z.strictObject({
    isolation: oneOf(ENGINE_ISOLATIONS),
    /** A job that shows no sign of life (step, decode, result) for this long has its engine process killed and fails. */
    stepTimeoutSeconds: intBetween(1, 3600),
    /** The longest the engine process may take to load and warm up the model before it is killed and start fails. */
    startTimeoutSeconds: intBetween(10, 3600),
    /** Scheduling priority (nice value) of the engine process; above 0 the Discord thread wins the CPU; 0 = the bot's own. */
    niceness: intBetween(0, 19),
  }),
  worker: z.strictObject({
    /**
     * Continuous batching: the most UNet rows (two per image with guidance, one without) that jobs of one size share
     * in one running batch (batched-denoiser.ts); 1 = one job at a time.
     */
    maxBatch: intBetween(1, 64),
  }),
  generation: z.strictObject({
    defaults: z.strictObject({
      steps: intBetween(1, 150),
      cfg: numberBetween(0, 30),
      size: imageSize(),
      /** null = the scheduler named in the model's scheduler/scheduler_config.json. */
      scheduler: rule((m) => z.union([z.null(m), z.enum(SCHEDULER_NAMES, m)], m), `must be null (the model's own) or one of ${SCHEDULER_NAMES.join(', ')}`),
      /** With `scheduler` euler, dpmpp_2m or lms: its Karras variant ("DPM++ 2M Karras"), as `generate --karras`. */
      karras: bool(),
      negative: text(),
    }),
    limits: z.strictObject({
      maxSteps: intBetween(1, 150),
      maxCfg: numberBetween(0, 30),
      /** /imagine's count option offers 1–4 (four attachments per message keep the reply readable). */
      maxCount: intBetween(1, 4),
      sizes: rule((m) => z.array(imageSize(), m).min(1, m), 'must be a non-empty list of sizes such as ["512x512"]'),
    }),
    /** How the bot reads prompts: A1111's weights and long-prompt chunks, or diffusers' plain text (prompt/index.ts). */
    promptSyntax: oneOf(PROMPT_SYNTAXES),
    /** A1111's clip skip for every job (clip-skip.ts). */
    clipSkip: intBetween(1, MAX_CLIP_SKIP),
    rng: oneOf(RNG_DEVICES),
  }),
  queue: z.strictObject({
    maxPerUser: intBetween(1, 100),
    maxPerGuild: intBetween(1, 1000),
    maxTotal: intBetween(1, 10000),
    backend: oneOf(QUEUE_BACKENDS),
    /** The Redis the bot and the workers share (REDIS_URL); required by backend "redis". */
    redisUrl: rule(
      (m) => z.string(m).refine((value) => value === '' || /^rediss?:\/\/\S+$/i.test(value), m),
      'must be "" or a redis:// or rediss:// URL such as redis://localhost:6379',
    ),
    /** Backend redis: how often each worker heart-beats; one silent for 3 beats is shown as gone. */
    workerHeartbeatMs: intBetween(100, 60000),
    /** Backend redis: BullMQ's job lock and stalled-check interval; a killed worker's job reruns within about 2×. */
    lostJobAfterMs: intBetween(500, 600000),
    shutdownGraceSeconds: intBetween(0, 3600),
  }),
  preview: z.strictObject({
    enabled: bool(),
    /** Discord allows about 5 message edits per 5 s per channel; 1500 ms leaves room for the rest of the bot. */
    minIntervalMs: intBetween(250, 60000),
    format: oneOf(PREVIEW_FORMATS),
    /** Longest side of a preview image in pixels. */
    size: intBetween(64, 1024),
  }),
  delivery: z.strictObject({
    /** How long a finished job's PNGs stay in <dataDir>/results after they were made (the outbox delivers from there). */
    keepFinishedHours: intBetween(1, 24 * 90),
  }),
  safety: z.strictObject({
    nsfwPolicy: oneOf(NSFW_POLICIES),
    checkInNsfwChannels: bool(),
  }),
  rateLimit: z.strictObject({
    /** Jobs per user per window of `minutes`; 0 = no window limit (guild settings use the same convention). */
    jobs: intBetween(0, 1000),
    minutes: intBetween(1, 1440),
    cooldownSeconds: intBetween(0, 3600),
    daily: intBetween(0, 100000),
  }),
  storage: z.strictObject({
    dataDir: nonEmptyText(),
    /** null = <dataDir>/imagine.sqlite. */
    sqlitePath: rule((m) => z.union([z.null(m), z.string(m).min(1, m)], m), 'must be null or a file path'),
    /** "" = the embedded SQLite file; otherwise a keyv URL such as redis://localhost:6379. */
    keyvUrl: rule(
      (m) => z.string(m).refine((value) => value === '' || /^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(value), m),
      'must be "" (SQLite) or a URL such as redis://localhost:6379',
    ),
  }),
  hub: z.strictObject({
    /** HF_ENDPOINT: the Hugging Face Hub (or a mirror, or the tests' local server). */
    endpoint: httpUrl(),
    /** The Hub cache folder; "" = HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
    cacheDir: text(),
    /** Only ever from the environment (HF_TOKEN). */
    token: nonEmptyText().optional(),
  }),
  log: z.strictObject({
    level: oneOf(LOG_LEVELS),
  }),
});

export type ConfigInput = z.infer<typeof configSchema>;

/**
 * The configuration the rest of the program reads: paths are absolute, and derived values are filled in
 * (storage.sqlitePath, hub.cacheDir), so no consumer repeats the defaulting rules.
 */
export type Config = Omit<ConfigInput, 'storage' | 'hub'> & {
  storage: Omit<ConfigInput['storage'], 'sqlitePath'> & { sqlitePath: string };
  hub: Omit<ConfigInput['hub'], 'cacheDir'> & { cacheDir: string };
};

/** Keys that hold secrets: they come from the environment only, and are refused in JSON files. */
export const SECRET_KEYS: ReadonlyArray<{ path: string; env: string }> = [
  { path: 'discord.token', env: 'DISCORD_TOKEN' },
  { path: 'discord.appId', env: 'DISCORD_APP_ID' },
  { path: 'hub.token', env: 'HF_TOKEN' },
];
