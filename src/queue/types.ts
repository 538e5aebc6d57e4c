import type { PromptSyntax } from '../diffusion/prompt/index.js';
import type { InitImage } from '../diffusion/request.js';
import type { RngDevice } from '../diffusion/rng/types.js';
import type { SchedulerName } from '../diffusion/schedulers/types.js';

/**
 * What one job asks the engine for, in a JSON-safe shape (this is what the job store keeps and what a button click
 * after a restart reads back). The seed is an unsigned 64-bit integer written as a decimal string, because JSON has
 * no bigint and a double would lose the low bits of most seeds.
 */
export interface JobParams {
  prompt: string;
  /** The negative prompt as the engine receives it (the guild's default negative already merged in); '' for none. */
  negative: string;
  /** Decimal string of an integer in 0 … 2^64−1. */
  seed: string;
  steps: number;
  cfg: number;
  width: number;
  height: number;
  scheduler: SchedulerName;
  /**
   * Karras sigmas (the "… Karras" samplers; Euler, DPM++ 2M and LMS only). Absent (jobs stored before it existed, and
   * every other sampler) leaves the choice to the model's scheduler_config.json, as before.
   */
  karras?: boolean;
  /** Images in this job, 1 … 4. */
  count: number;
  /** Which torch generator the noise reproduces. */
  rng: RngDevice;
  /**
   * How the engine reads the prompts. Absent in jobs stored before the setting existed: those ran as `plain`
   * (diffusers' literal text), so absent means `plain` and a re-roll of an old job reads its prompt as it did.
   */
  promptSyntax?: PromptSyntax;
  /** A1111's clip skip; absent (older jobs) = 1, the text encoder's last layer. */
  clipSkip?: number;
  /**
   * img2img: the image to start from (stored bytes, named by their SHA-256 in an InputImageStore: JSON-safe, small,
   * and readable by a worker on another machine) and how much of it to repaint, in (0, 1]. Absent: txt2img.
   */
  init?: InitImageRef;
}

/** An img2img job's starting image, by reference: the bytes live in an InputImageStore (src/queue/inputs.ts). */
export interface InitImageRef {
  /** SHA-256 of the PNG, hex: the key of the bytes in the store. */
  ref: string;
  /** Denoising strength in (0, 1]: 0.35 keeps most of the image, 1 repaints it all. */
  strength: number;
}

/** How a job was made from another one (JobRecord.relation). */
export const JOB_RELATIONS = ['reroll', 'same-seed', 'variation', 'upscale', 'remix'] as const;
export type JobRelation = (typeof JOB_RELATIONS)[number];

/** Where a job comes from: the parent job, what was done to it and, for image buttons, which of its images (1-based). */
export interface JobLineage {
  parentId?: string;
  relation?: JobRelation;
  parentImage?: number;
}

/**
 * What the engine receives: the job's parameters with the seed as a bigint, and for img2img (and the hires-fix
 * upscale, HIRES_FIX_*) the image to start from with its strength. The image's bytes are not part of JobParams (a
 * JSON record): whoever queues such a job keeps them where it can read them back and sets `initImage` here.
 */
export interface GenerationRequest extends Omit<JobParams, 'seed'> {
  seed: bigint;
  initImage?: InitImage;
}

export interface GenerationProgress {
  /** Steps completed so far, 1 … totalSteps. */
  step: number;
  totalSteps: number;
  /**
   * The current latents, shape (batch, 4, height/8, width/8), for a cheap preview. Optional: an engine may leave it
   * out. The engine may reuse the array after the callback returns, so a listener that keeps it must copy it.
   */
  latents?: { data: Float32Array; shape: readonly [number, number, number, number] };
  /**
   * Set (with step 0) while the engine merges the LoRAs these names refer to into the model before the first step
   * (a set it has not kept from an earlier job): the reply says so instead of a step count.
   */
  loadingLoras?: readonly string[];
}

export interface GenerateOptions {
  /** Aborted when the job is cancelled or the queue shuts down; the engine should stop between steps and reject. */
  signal: AbortSignal;
  onProgress?: (progress: GenerationProgress) => void;
  /** The queue's job id, for the engine's own log lines (an engine in another process logs with it). */
  jobId?: string;
}

export interface GeneratedImage {
  /** The encoded PNG (with whatever text chunks the engine writes). */
  png: Uint8Array;
  /** The seed this image reproduces from on its own. */
  seed: bigint;
  /** The safety checker's verdict; undefined when the checker did not run. */
  nsfw?: boolean;
}

export interface GeneratedImages {
  images: GeneratedImage[];
  /** The model's display name, for the result embed. */
  model?: string;
  /** The prompt's token count as shown to users ("92/150 tokens"; under `plain` also what was dropped). */
  promptTokens?: string;
}

/**
 * The engine as the queue sees it. The lead adapts the real pipeline to this; tests use a small real one.
 * `generate` must honour `signal` (reject once it is aborted, ideally with CancelledError from diffusion/errors).
 */
export interface ImageGenerator {
  generate(request: GenerationRequest, options: GenerateOptions): Promise<GeneratedImages>;
}

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
export const ACTIVE_STATUSES: readonly JobStatus[] = ['queued', 'running'];

export interface JobOwner {
  userId: string;
  guildId: string;
  channelId: string;
}

export interface JobResult {
  /** One per image, decimal strings. */
  seeds: string[];
  /** One per image: true when the safety checker flagged it, null when it did not run. */
  nsfw: (boolean | null)[];
  /** File names (inside the queue's outputDir) when the queue was given one, else empty. */
  files: string[];
  /** Wall time of the generate() call that produced the result. */
  durationMs: number;
  model?: string;
  /** GeneratedImages.promptTokens, for the result embed. */
  promptTokens?: string;
}

export interface JobError {
  code: string;
  /** One sentence a person can read. Internal faults get a generic sentence; their detail goes to the log. */
  message: string;
}

/** A JSON value, for the free-form `meta` record. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface JobRecord {
  /** Record shape version, for later migrations. */
  v: 1;
  /** Short, URL-safe, unique (12 characters of base64url); fits in a button custom_id. */
  id: string;
  owner: JobOwner;
  params: JobParams;
  status: JobStatus;
  /** Enqueue sequence number, strictly increasing per store; restored jobs run in this order. */
  seq: number;
  /** Epoch milliseconds. */
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /** How many times a worker started this job (more than 1 after a restart interrupted a run). */
  attempts: number;
  /** The job this one was made from (re-roll, same seed, variation, upscale, remix), if any. */
  parentId?: string;
  /** What was done to the parent (absent on jobs stored before it was recorded). */
  relation?: JobRelation;
  /** Which of the parent's images (1-based) a variation or upscale started from. */
  parentImage?: number;
  result?: JobResult;
  error?: JobError;
  /** Who cancelled it (a user id), when cancelled. */
  cancelledBy?: string;
  /**
   * Free for the Discord side: message ids, interaction token and its expiry, whatever it needs to find its messages
   * again after a restart. The queue never reads or logs it. Update with JobQueue.updateMeta.
   */
  meta: JsonObject;
}

/** A job as shown to users: its record and where it stands. */
export interface JobStanding {
  job: JobRecord;
  /** 0 while running, 1 for the next job to start, 2 after it, …; null once finished. */
  position: number | null;
}

export interface RunningJobInfo {
  job: JobRecord;
  step: number;
  totalSteps: number;
}

export interface QueueSnapshot {
  /** What the worker runs now (one entry with one worker). */
  running: RunningJobInfo[];
  /** Jobs waiting, all guilds. */
  queuedTotal: number;
  /** Per guild that has active jobs: how many wait and how many run. */
  guilds: Array<{ guildId: string; queued: number; running: number }>;
  /** The asking user's active jobs with positions, in dispatch order (when a user id was given). */
  user: JobStanding[];
}

/** One pipeline worker as `/imagine-status` and `doctor` show it. */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  model: string;
  provider: string;
  /** The device id the worker was started with (`imagine-bot worker --device N`), null for the provider's default. */
  device: number | null;
  /** gone: it closed, or its heartbeat is older than the backend's limit (killed, machine gone, Redis unreachable). */
  state: 'busy' | 'idle' | 'gone';
  /** The job it runs now, when busy. */
  jobId?: string;
  jobsDone: number;
  /** Epoch milliseconds of its last heartbeat. */
  lastHeartbeat: number;
}

/** One gateway shard of the bot, as its process reports it (`/imagine-status`). */
export interface ShardReport {
  id: number;
  /** The shard count it identified with (over every bot process). */
  count: number;
  /** Guilds it serves. */
  guilds: number;
  /** The gateway's heartbeat round trip in milliseconds; null before the first acknowledgement. */
  pingMs: number | null;
  /** Whether its gateway session is up (READY or resumed) right now. */
  connected: boolean;
}

/** A shard as the queue backend knows it: the report, who sent it, and when. */
export interface ShardInfo extends ShardReport {
  host: string;
  pid: number;
  /** gone: its process stopped (closed, or its reports are older than the backend's limit: killed, machine gone). */
  state: 'live' | 'gone';
  /** Epoch milliseconds of its last report. */
  lastHeartbeat: number;
}

export interface EnqueueInput extends JobLineage {
  owner: JobOwner;
  params: JobParams;
  meta?: JsonObject;
}

export interface CancelActor {
  userId: string;
  /** The caller decides (e.g. Manage Guild permission); an admin may cancel anyone's job. */
  isAdmin: boolean;
}

/** Events the Discord side subscribes to. Each payload carries a copy of the job's record as it is now. */
export interface JobQueueEvents {
  /** A job entered the queue; `restored` when it was reloaded from the store at start. */
  queued: { job: JobRecord; position: number; restored: boolean };
  /** A waiting job's position changed (emitted only when it changed). */
  position: { job: JobRecord; position: number };
  started: { job: JobRecord };
  progress: { job: JobRecord; progress: GenerationProgress };
  /** Finished: `images` carries the PNG bytes (not stored in keyv; see JobResult.files). */
  finished: { job: JobRecord; images: readonly GeneratedImage[] };
  failed: { job: JobRecord; error: JobError };
  cancelled: { job: JobRecord; by: string; wasRunning: boolean };
}

export type JobQueueEventName = keyof JobQueueEvents;
export type JobQueueListener<K extends JobQueueEventName> = (payload: JobQueueEvents[K]) => void | Promise<void>;

/**
 * The queue as the Discord side uses it. LocalJobQueue runs it in this process with one pipeline worker; a later
 * implementation can put the same contract on Redis (BullMQ) for several GPU workers, which is why every query is
 * async.
 */
export interface JobQueue {
  /** Loads persisted queued/running jobs (emitting `queued` with restored=true for each) and starts dispatching. */
  start(): Promise<void>;
  /**
   * Stops dispatching; a running job may finish within the implementation's shutdown grace (LocalJobQueue's
   * `shutdownGraceMs`), after which it is interrupted and stays persisted as running, so the next start reruns it.
   */
  close(): Promise<void>;
  enqueue(input: EnqueueInput): Promise<JobStanding>;
  /** Cancels a queued or running job; resolves once the job is recorded as cancelled. */
  cancel(jobId: string, actor: CancelActor): Promise<JobRecord>;
  /** Any job still in the store (finished ones too, until their TTL ends). */
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Position of an active job (0 = running) or null when it is not active. */
  standing(jobId: string): Promise<JobStanding | undefined>;
  snapshot(userId?: string): Promise<QueueSnapshot>;
  /** Active (queued + running) jobs of a guild, and of one user in it; used by admission's queue limits. */
  activeCounts(guildId: string, userId: string): Promise<{ guild: number; user: number }>;
  /** Shallow-merges `patch` into the job's `meta` and persists it (works on finished jobs too). */
  updateMeta(jobId: string, patch: JsonObject): Promise<JobRecord>;
  /** The pipeline workers behind the queue: the Redis backend's fleet, the local backend's one in-process worker. */
  workers?(): Promise<WorkerInfo[]>;
  /**
   * Publishes this process's gateway shards where every bot process sharing the queue reads them (the Redis backend;
   * called on each heartbeat). Absent on the local backend, whose one process knows its shards itself.
   */
  reportShards?(shards: readonly ShardReport[]): Promise<void>;
  /** The shards every bot process reported, by id (the gone ones too). */
  shards?(): Promise<ShardInfo[]>;
  on<K extends JobQueueEventName>(event: K, listener: JobQueueListener<K>): () => void;
  off<K extends JobQueueEventName>(event: K, listener: JobQueueListener<K>): void;
}
