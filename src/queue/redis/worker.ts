/**
 * One pipeline worker of the Redis backend: a BullMQ Worker (concurrency 1; with continuous batching up to
 * worker.maxBatch jobs, while the dispatcher promotes one more job per worker whose running jobs leave UNet rows
 * free: see `jobSlots`) running an ImageGenerator, with a
 * heartbeat record the bot shows in /imagine-status. BullMQ's lock renewal and stalled-job check are what find the
 * job of a worker that was killed (SIGKILL, machine gone): its lock expires, another worker's stalled check moves
 * the job back to wait, and it reruns there.
 *
 * The worker never touches the job store: it returns the job's outcome (done, failed, cancelled) as the BullMQ
 * job's return value and leaves the PNGs in Redis; the bot records and delivers it, once.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Queue, WaitingError, Worker, type Job, type RedisClient } from 'bullmq';
import type { Logger } from 'pino';
import { rowsOf } from '../../diffusion/batched-denoiser.js';
import { CancelledError, isImagineError } from '../../errors.js';
import { describeFailure, toGenerationRequest } from '../local-queue.js';
import { RedisInputImageStore, withInputImages } from '../inputs.js';
import type { GenerationProgress, ImageGenerator, JobError } from '../types.js';
import { Dispatcher, readWorkers } from './dispatcher.js';
import { RedisFairStore } from './fair-store.js';
import {
  BULL_QUEUE_NAME,
  DEFAULT_KEY_PREFIX,
  RESULT_TTL_MS,
  connectionFor,
  encodeProgress,
  redisKeys,
  type RedisJobData,
  type RedisKeys,
  type RedisOutcome,
  type WorkerHeartbeat,
} from './protocol.js';
import { watchConnection } from './connection-log.js';

export interface RedisTimings {
  /** How often a worker writes its heartbeat (and runs the dispatcher). Default 5000 ms. */
  heartbeatMs?: number;
  /** A worker silent for this long is gone. Default 3 heartbeats. */
  goneAfterMs?: number;
  /** BullMQ lock of a running job; a killed worker's job is found stalled after about this long. Default 30000 ms. */
  lockDurationMs?: number;
  /** How often each worker checks for stalled jobs. Default 30000 ms (BullMQ's default). */
  stalledIntervalMs?: number;
}

export interface RedisWorkerOptions extends RedisTimings {
  /** redis:// or rediss:// URL. */
  url: string;
  /** Key prefix shared with the bot. Default "imagine". */
  prefix?: string;
  generator: ImageGenerator;
  /** What /imagine-status shows for this worker. */
  identity: { model: string; provider: string; device: number | null };
  logger?: Logger;
  /** How often a step-only progress update is sent (latents for previews are throttled by the generator). */
  progressIntervalMs?: number;
  /** How often a running job checks whether it was cancelled. Default 250 ms. */
  cancelPollMs?: number;
  /**
   * Continuous batching (config worker.maxBatch): the UNet rows (two per image with guidance, one without) this
   * worker's running jobs may fill; while some are free it takes one more job. Default 1: one job at a time.
   */
  maxBatchRows?: number;
}

interface RunningJob {
  jobId: string;
  controller: AbortController;
  rows: number;
  cancelledBy?: string;
}

/** The timings configured in `queue` (workerHeartbeatMs, lostJobAfterMs), for the bot and the workers alike. */
export function timingsFromQueueConfig(queue: { workerHeartbeatMs: number; lostJobAfterMs: number }): RedisTimings {
  return { heartbeatMs: queue.workerHeartbeatMs, lockDurationMs: queue.lostJobAfterMs, stalledIntervalMs: queue.lostJobAfterMs };
}

/** Defaults shared by the bot and the workers, so both read a heartbeat the same way. */
export function resolveTimings(timings: RedisTimings): Required<RedisTimings> {
  const heartbeatMs = timings.heartbeatMs ?? 5000;
  return {
    heartbeatMs,
    goneAfterMs: timings.goneAfterMs ?? heartbeatMs * 3,
    lockDurationMs: timings.lockDurationMs ?? 30_000,
    stalledIntervalMs: timings.stalledIntervalMs ?? 30_000,
  };
}

export class RedisWorker {
  readonly id: string;
  private readonly options: RedisWorkerOptions;
  private readonly timings: Required<RedisTimings>;
  private readonly keys: RedisKeys;
  private readonly logger: Logger | undefined;
  private queue: Queue<RedisJobData> | undefined;
  private worker: Worker<RedisJobData, RedisOutcome> | undefined;
  private client: RedisClient | undefined;
  private dispatcher: Dispatcher | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private jobsDone = 0;
  /** The jobs it runs now, in the order they started. */
  private readonly running = new Map<string, RunningJob>();
  private closing = false;
  private readonly generator: ImageGenerator;

  constructor(options: RedisWorkerOptions) {
    this.options = options;
    this.timings = resolveTimings(options);
    this.keys = redisKeys(options.prefix ?? DEFAULT_KEY_PREFIX);
    // img2img jobs name their starting image; the bot stored it on this Redis (src/queue/inputs.ts).
    this.generator = withInputImages(options.generator, new RedisInputImageStore(() => {
      if (!this.client) throw new Error('the worker is not connected to Redis');
      return this.client;
    }, this.keys.input));
    this.logger = options.logger;
    this.id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  }

  /** Connects, registers the heartbeat and starts taking jobs. */
  async start(): Promise<void> {
    const connection = connectionFor(this.options.url);
    this.queue = new Queue<RedisJobData>(BULL_QUEUE_NAME, { connection, prefix: this.keys.bullPrefix });
    this.queue.on('error', (error) => this.logger?.warn({ err: error }, 'redis queue error'));
    this.client = await this.queue.client;
    watchConnection(this.client, this.logger, 'worker');
    this.dispatcher = new Dispatcher({
      client: this.client,
      queue: this.queue,
      fair: new RedisFairStore(this.client, this.keys),
      keys: this.keys,
      goneAfterMs: this.timings.goneAfterMs,
      ...(this.logger ? { logger: this.logger } : {}),
    });
    await this.forgetLongGone();
    await this.beat();
    this.worker = new Worker<RedisJobData, RedisOutcome>(BULL_QUEUE_NAME, (job, token) => this.process(job, token), {
      connection,
      prefix: this.keys.bullPrefix,
      // Every job takes at least one row: never more jobs than rows (the dispatcher promotes fewer: see jobSlots).
      concurrency: this.options.maxBatchRows ?? 1,
      lockDuration: this.timings.lockDurationMs,
      stalledInterval: this.timings.stalledIntervalMs,
      // A job whose worker died this often is more likely the cause than the victim: it fails then.
      maxStalledCount: 3,
    });
    this.worker.on('error', (error) => this.logger?.warn({ err: error }, 'redis worker error'));
    this.worker.on('stalled', (jobId) => this.logger?.warn({ jobId }, 'job stalled (its worker stopped answering); it reruns'));
    this.worker.on('completed', () => this.kick());
    this.worker.on('failed', () => this.kick());
    this.heartbeatTimer = setInterval(() => {
      this.beat()
        .then(() => this.dispatcher?.dispatch())
        .catch((error: unknown) => this.logger?.warn({ err: error }, 'heartbeat failed'));
    }, this.timings.heartbeatMs);
    this.logger?.info({ workerId: this.id, ...this.options.identity }, 'worker started');
    this.kick();
  }

  /**
   * Stops taking jobs. A running job is interrupted and handed back to the wait list (it reruns on another worker
   * or after a restart); then the heartbeat record says "gone".
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    for (const run of this.running.values()) run.controller.abort(new Error('worker closing'));
    await this.worker?.close();
    await this.beat({ closed: true }).catch(() => undefined);
    await this.queue?.close();
    this.logger?.info({ workerId: this.id, jobsDone: this.jobsDone }, 'worker stopped');
  }

  /** Drops heartbeat records silent for a day, so the fleet list shows recent workers only. */
  private async forgetLongGone(): Promise<void> {
    const client = this.client as RedisClient;
    const day = 24 * 3600 * 1000;
    const stale = (await readWorkers(client, this.keys, this.timings.goneAfterMs)).filter((w) => Date.now() - w.lastHeartbeat > day);
    if (stale.length > 0) await client.hdel(this.keys.workers, ...stale.map((w) => w.id));
  }

  private kick(): void {
    this.dispatcher?.dispatch().catch((error: unknown) => this.logger?.warn({ err: error }, 'dispatch failed'));
  }

  private async beat(extra: { closed?: boolean } = {}): Promise<void> {
    if (!this.client) return;
    const beat: WorkerHeartbeat = {
      id: this.id,
      host: hostname(),
      pid: process.pid,
      ...this.options.identity,
      busy: this.running.size > 0,
      ...(this.running.size > 0 ? { jobId: [...this.running.keys()][0]! } : {}),
      ...(this.running.size > 1 ? { jobIds: [...this.running.keys()] } : {}),
      jobSlots: this.jobSlots(),
      jobsDone: this.jobsDone,
      startedAt: this.startedAt,
      lastHeartbeat: Date.now(),
      ...extra,
    };
    await this.client.hset(this.keys.workers, { [this.id]: JSON.stringify(beat) });
  }

  /**
   * How many jobs this worker would hold now: those it runs, plus one while they leave a UNet row free (the next job
   * may need more rows than are free; it then waits in the engine's batch for them). The dispatcher promotes jobs
   * only while the live workers' slots are not all taken. (BullMQ's own concurrency is fixed at worker.maxBatch:
   * raising it while jobs run does not wake its fetch loop, so it cannot follow the slots.)
   */
  private jobSlots(): number {
    let rows = 0;
    for (const run of this.running.values()) rows += run.rows;
    return this.running.size + (rows < (this.options.maxBatchRows ?? 1) || this.running.size === 0 ? 1 : 0);
  }

  /** Tells the fleet (heartbeat: `jobSlots`) after a job starts or ends. */
  private async slotsChanged(): Promise<void> {
    await this.beat().catch(() => undefined);
    // A slot freed by a job start (batching) or end: promote the next job for it now, not at the next tick.
    if (!this.closing && (this.options.maxBatchRows ?? 1) > 1) this.kick();
  }

  private async process(job: Job<RedisJobData, RedisOutcome>, token: string | undefined): Promise<RedisOutcome> {
    const client = this.client as RedisClient;
    const data = job.data;
    const log = this.logger?.child({ jobId: data.id, attempt: job.attemptsStarted });
    const earlyCancel = await client.get(this.keys.cancel(data.id));
    if (earlyCancel) return { kind: 'cancelled', by: earlyCancel, worker: this.id };
    const current: RunningJob = { jobId: data.id, controller: new AbortController(), rows: rowsOf(Math.max(1, data.params.count), data.params.cfg) };
    this.running.set(data.id, current);
    await this.slotsChanged();
    log?.info('job running on this worker');
    const poll = setInterval(() => {
      client
        .get(this.keys.cancel(data.id))
        .then((by) => {
          if (by && current.cancelledBy === undefined) {
            current.cancelledBy = by;
            current.controller.abort(new CancelledError());
          }
        })
        .catch(() => undefined);
    }, this.options.cancelPollMs ?? 250);
    const startedAt = Date.now();
    let lastProgressAt = -Infinity;
    const progressEvery = this.options.progressIntervalMs ?? 250;
    try {
      const output = await this.generator.generate(toGenerationRequest({ params: data.params }), {
        signal: current.controller.signal,
        onProgress: (progress: GenerationProgress) => {
          const now = performance.now();
          // Latents are already throttled by the generator (preview interval); plain steps are throttled here.
          if (!progress.latents && progress.step < progress.totalSteps && now - lastProgressAt < progressEvery) return;
          lastProgressAt = now;
          job.updateProgress(encodeProgress(progress) as unknown as object).catch((error: unknown) => log?.warn({ err: error }, 'progress update failed'));
        },
      });
      current.controller.signal.throwIfAborted();
      for (const [index, image] of output.images.entries()) {
        await client.set(this.keys.result(data.id, index), Buffer.from(image.png).toString('base64'), { PX: RESULT_TTL_MS });
      }
      this.jobsDone += 1;
      return {
        kind: 'done',
        seeds: output.images.map((image) => image.seed.toString()),
        nsfw: output.images.map((image) => image.nsfw ?? null),
        ...(output.model !== undefined ? { model: output.model } : {}),
        ...(output.promptTokens !== undefined ? { promptTokens: output.promptTokens } : {}),
        durationMs: Date.now() - startedAt,
        images: output.images.length,
        worker: this.id,
      };
    } catch (error) {
      if (current.cancelledBy !== undefined) return { kind: 'cancelled', by: current.cancelledBy, worker: this.id };
      if (this.closing) {
        // Shutdown, not the job's fault: back to the wait list for another worker.
        log?.info('job interrupted by worker shutdown; handed back to the queue');
        await job.moveToWait(token);
        throw new WaitingError();
      }
      this.jobsDone += 1;
      if (isImagineError(error)) log?.warn({ code: error.code, reason: error.message }, 'job failed');
      else log?.error({ err: error }, 'job failed with an internal error');
      return { kind: 'failed', error: describeFailure(error), worker: this.id };
    } finally {
      clearInterval(poll);
      this.running.delete(data.id);
      await this.slotsChanged();
    }
  }
}
