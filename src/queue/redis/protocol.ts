/**
 * What the bot and the workers of the Redis backend exchange, and the key names they share. One place, so a worker
 * of one build and a bot of the same build agree on every byte. See docs/queue-redis.md for the design.
 */
import type { RedisOptions } from 'bullmq';
import type { GenerationProgress, JobError, JobOwner, JobParams, WorkerInfo } from '../types.js';

/** The BullMQ queue every bot and worker on one Redis shares (under `<prefix>:bull`). */
export const BULL_QUEUE_NAME = 'generate';
export const DEFAULT_KEY_PREFIX = 'imagine';

/** Key names, all under one prefix so tests (and several deployments on one Redis) do not meet. */
export function redisKeys(prefix: string) {
  return {
    /** BullMQ's own prefix: its keys are `<prefix>:bull:generate:*`. */
    bullPrefix: `${prefix}:bull`,
    /** Fair waiting room (see fair-store.ts): every id → "guild\nuser", the priority lane, the guild ring. */
    fairJobs: `${prefix}:fair:jobs`,
    fairPriority: `${prefix}:fair:priority`,
    fairGuilds: `${prefix}:fair:guilds`,
    fairData: `${prefix}:fair:data`,
    /** Prefix of the per-guild user rings (`…users:<guild>`) and per-user job lists (`…user:<guild>:<user>`). */
    fairBase: `${prefix}:fair:`,
    /** Only one process promotes jobs at a time. */
    dispatchLock: `${prefix}:dispatch-lock`,
    /** Worker heartbeats: worker id → JSON WorkerHeartbeat. */
    workers: `${prefix}:workers`,
    /** Bot gateway shards: shard id → JSON ShardInfo of the process that runs it (its last report). */
    shards: `${prefix}:shards`,
    /** One image of a finished job, base64 PNG, kept for RESULT_TTL_MS. */
    result: (jobId: string, index: number) => `${prefix}:result:${jobId}:${index}`,
    /** An img2img job's starting image, base64 PNG, by its SHA-256 (src/queue/inputs.ts). */
    input: (ref: string) => `${prefix}:input:${ref}`,
    /** Set once (SET NX) by the bot process that delivers a job's end: the exactly-once claim. */
    delivered: (jobId: string) => `${prefix}:delivered:${jobId}`,
    /** Set by cancel(): who cancelled; the worker running (or about to run) the job stops. */
    cancel: (jobId: string) => `${prefix}:cancel:${jobId}`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;

/** How long result PNGs wait in Redis for a bot to deliver them (a bot restart must fit in it). */
export const RESULT_TTL_MS = 24 * 3600 * 1000;
/** How long a delivery claim and a cancel flag live: longer than any job can wait. */
export const MARKER_TTL_MS = 7 * 24 * 3600 * 1000;

/** The BullMQ job's data: what a worker needs to run it. The job record itself stays in the bot's JobStore. */
export interface RedisJobData {
  id: string;
  owner: JobOwner;
  params: JobParams;
}

/** The BullMQ progress payload: a step, and now and then the latents for a preview (base64 float32). */
export interface RedisProgress {
  step: number;
  totalSteps: number;
  latents?: { shape: [number, number, number, number]; base64: string };
  loadingLoras?: string[];
}

/**
 * How a job ended on its worker: the BullMQ job's return value. Engine failures and cancels are outcomes too (the
 * processor returns them), so BullMQ's own `failed` means only "the infrastructure gave up" (stalled too often).
 */
export type RedisOutcome =
  | { kind: 'done'; seeds: string[]; nsfw: (boolean | null)[]; model?: string; promptTokens?: string; durationMs: number; images: number; worker: string }
  | { kind: 'failed'; error: JobError; worker: string }
  | { kind: 'cancelled'; by: string; worker: string };

/**
 * A worker's heartbeat record: what `/imagine-status` shows of it (WorkerInfo), with `busy` and its start and close
 * instead of the derived state (busy, idle, or gone once the heartbeat is old or `closed` is set).
 */
export interface WorkerHeartbeat extends Omit<WorkerInfo, 'state'> {
  busy: boolean;
  /**
   * Continuous batching: every job it runs now (`jobId` is the first), and how many jobs it would hold now: those
   * plus one while it has free UNet rows (docs/queue-redis.md). Absent (older workers, worker.maxBatch 1): one.
   */
  jobIds?: string[];
  jobSlots?: number;
  startedAt: number;
  /** Set when the worker closed on purpose. */
  closed?: boolean;
}

export function encodeProgress(progress: GenerationProgress): RedisProgress {
  const out: RedisProgress = { step: progress.step, totalSteps: progress.totalSteps };
  if (progress.loadingLoras) out.loadingLoras = [...progress.loadingLoras];
  if (progress.latents) {
    const { data, shape } = progress.latents;
    out.latents = { shape: [...shape], base64: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') };
  }
  return out;
}

export function decodeProgress(value: unknown): GenerationProgress | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { step, totalSteps, latents, loadingLoras } = value as Partial<RedisProgress>;
  if (typeof step !== 'number' || typeof totalSteps !== 'number') return undefined;
  if (Array.isArray(loadingLoras)) return { step, totalSteps, loadingLoras: loadingLoras.map(String) };
  if (!latents || typeof latents.base64 !== 'string' || !Array.isArray(latents.shape)) return { step, totalSteps };
  const bytes = Buffer.from(latents.base64, 'base64');
  // Copy into a fresh, aligned buffer: a Buffer from base64 may sit at any offset of a shared pool.
  const data = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(data.buffer).set(bytes);
  return { step, totalSteps, latents: { data, shape: latents.shape } };
}

/**
 * BullMQ connection options for a redis:// or rediss:// URL. `maxRetriesPerRequest: null` is what BullMQ asks for
 * (commands wait for a reconnect instead of failing), so a Redis restart is a pause, not a crash.
 */
export function connectionFor(url: string): RedisOptions {
  return { url, maxRetriesPerRequest: null, enableOfflineQueue: true };
}
