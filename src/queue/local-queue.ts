import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { rowsOf } from '../diffusion/batched-denoiser.js';
import { CancelledError, isImagineError } from '../errors.js';
import { TypedEmitter } from './emitter.js';
import { JobNotActiveError, JobNotFoundError, NotYourJobError, QueueClosedError } from './errors.js';
import { FairScheduler } from './fair-scheduler.js';
import type { JobStore } from './job-store.js';
import type {
  CancelActor,
  EnqueueInput,
  GeneratedImages,
  GenerationRequest,
  ImageGenerator,
  JobError,
  JsonObject,
  JobQueue,
  JobQueueEventName,
  JobQueueEvents,
  JobQueueListener,
  JobRecord,
  JobStanding,
  QueueSnapshot,
  RunningJobInfo,
  WorkerInfo,
} from './types.js';

export interface LocalJobQueueOptions {
  store: JobStore;
  generator: ImageGenerator;
  logger?: Logger;
  /** When set, each finished image is also written here as `<jobId>-<n>.png` and named in JobResult.files. */
  outputDir?: string;
  /** Epoch milliseconds; tests may pass their own clock. */
  clock?: () => number;
  /** What `workers()` says about the one in-process worker (the loaded model and its provider). */
  identity?: { model: string; provider: string };
  /**
   * How long close() lets a running job go on to finish (its result recorded and announced as usual) before it
   * interrupts it; default 0: interrupt at once. An interrupted job stays persisted as running and reruns first at
   * the next start.
   */
  shutdownGraceMs?: number;
  /**
   * Continuous batching (config worker.maxBatch): jobs run at once while their UNet rows (two per image with
   * guidance, one without) fit in this many; the generator batches them. Default 1: one job at a time.
   */
  maxBatchRows?: number;
}

interface Waiting {
  id: string;
  guildId: string;
  userId: string;
  job: JobRecord;
}

interface Run {
  job: JobRecord;
  controller: AbortController;
  step: number;
  totalSteps: number;
  cancelledBy?: string;
  /** Set when close() interrupts the run: the job stays persisted as running and reruns at the next start. */
  interruptedByShutdown: boolean;
  settled: Promise<void>;
}

/**
 * The job queue in this process: a FairScheduler of waiting jobs in front of one pipeline worker, with every job
 * persisted in a JobStore so the queue survives restarts (even SIGKILL).
 *
 * The worker is a p-queue (concurrency: one job per row at most). The dispatcher hands it a job only when it is idle, so the choice of
 * the next job is made at the last moment (a guild that joins while a job runs is considered for the very next
 * slot), and p-queue gives the shutdown path its `onIdle()`. With continuous batching (`maxBatchRows` > 1) the
 * dispatcher also hands over the next job in fair order while its rows fit beside the running jobs' (a job that
 * does not fit waits, and so do the jobs behind it); the generator runs them in one UNet batch.
 */
export class LocalJobQueue implements JobQueue {
  private readonly store: JobStore;
  private readonly generator: ImageGenerator;
  private readonly logger: Logger | undefined;
  private readonly outputDir: string | undefined;
  private readonly clock: () => number;
  private readonly shutdownGraceMs: number;
  private readonly events: TypedEmitter<JobQueueEvents>;
  private readonly waiting = new FairScheduler<Waiting>();
  private readonly running = new Map<string, Run>();
  private readonly maxBatchRows: number;
  private readonly worker: PQueue;
  /** Positions last announced, so `position` events fire only on change. */
  private announced = new Map<string, number>();
  private state: 'new' | 'starting' | 'started' | 'closed' = 'new';
  private readonly identity: { model: string; provider: string };
  private jobsDone = 0;

  constructor(options: LocalJobQueueOptions) {
    this.identity = options.identity ?? { model: 'unknown', provider: 'unknown' };
    this.store = options.store;
    this.generator = options.generator;
    this.logger = options.logger;
    this.outputDir = options.outputDir;
    this.clock = options.clock ?? Date.now;
    this.shutdownGraceMs = options.shutdownGraceMs ?? 0;
    this.maxBatchRows = options.maxBatchRows ?? 1;
    // Every running job takes at least one row: as many jobs as rows at most.
    this.worker = new PQueue({ concurrency: this.maxBatchRows });
    this.events = new TypedEmitter<JobQueueEvents>(options.logger);
  }

  on<K extends JobQueueEventName>(event: K, listener: JobQueueListener<K>): () => void {
    return this.events.on(event, listener);
  }

  off<K extends JobQueueEventName>(event: K, listener: JobQueueListener<K>): void {
    this.events.off(event, listener);
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('LocalJobQueue.start() may be called once.');
    this.state = 'starting';
    const restored = await this.store.loadActive();
    for (const job of restored) {
      // A job that was running when the process died was already dispatched: it goes first, before the rings.
      const interrupted = job.status === 'running';
      job.status = 'queued';
      this.waiting.push(waitingOf(job), { priority: interrupted });
    }
    const positions = this.waiting.positions();
    for (const job of restored) {
      const position = positions.get(job.id) ?? 0;
      this.announced.set(job.id, position);
      this.events.emit('queued', { job: copy(job), position, restored: true });
    }
    if (restored.length > 0) this.logger?.info({ jobs: restored.length }, 'restored queued jobs');
    this.state = 'started';
    this.dispatch();
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    // From here on dispatch() starts nothing; a running job carries on, for the grace period at most.
    this.state = 'closed';
    const runs = [...this.running.values()];
    if (runs.length > 0 && this.shutdownGraceMs > 0) {
      this.logger?.info({ jobIds: runs.map((run) => run.job.id), graceMs: this.shutdownGraceMs }, 'letting the running job finish before stopping');
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.shutdownGraceMs)));
      await Promise.race([Promise.all(runs.map((run) => run.settled)), graceOver]);
      clearTimeout(timer);
    }
    for (const run of this.running.values()) {
      run.interruptedByShutdown = true;
      run.controller.abort(new QueueClosedError());
    }
    await this.worker.onIdle();
  }

  async enqueue(input: EnqueueInput): Promise<JobStanding> {
    if (this.state !== 'started') throw new QueueClosedError();
    const job = await this.store.create(input, this.clock());
    this.waiting.push(waitingOf(job));
    const position = this.waiting.positions().get(job.id) ?? 1;
    this.announced.set(job.id, position);
    this.events.emit('queued', { job: copy(job), position, restored: false });
    this.logger?.info({ jobId: job.id, guildId: job.owner.guildId, userId: job.owner.userId, position }, 'job queued');
    this.dispatch();
    return this.standingNow(job.id) ?? { job: copy(job), position: null };
  }

  async cancel(jobId: string, actor: CancelActor): Promise<JobRecord> {
    const waiting = this.waiting.get(jobId);
    if (waiting) {
      assertMayTouch(waiting.job, actor);
      this.waiting.remove(jobId);
      this.announced.delete(jobId);
      const job = waiting.job;
      job.status = 'cancelled';
      job.cancelledBy = actor.userId;
      job.finishedAt = this.clock();
      await this.store.finish(job);
      this.events.emit('cancelled', { job: copy(job), by: actor.userId, wasRunning: false });
      this.logger?.info({ jobId, by: actor.userId }, 'queued job cancelled');
      this.announcePositions();
      return copy(job);
    }
    const run = this.running.get(jobId);
    if (run) {
      assertMayTouch(run.job, actor);
      if (run.cancelledBy === undefined) {
        run.cancelledBy = actor.userId;
        run.controller.abort(new CancelledError());
      }
      await run.settled;
      return copy(run.job);
    }
    const stored = await this.store.get(jobId);
    if (!stored) throw new JobNotFoundError(jobId);
    assertMayTouch(stored, actor);
    throw new JobNotActiveError(jobId, stored.status);
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    const active = this.activeRecord(jobId);
    if (active) return copy(active);
    return this.store.get(jobId);
  }

  async standing(jobId: string): Promise<JobStanding | undefined> {
    const now = this.standingNow(jobId);
    if (now) return now;
    const stored = await this.store.get(jobId);
    return stored ? { job: stored, position: null } : undefined;
  }

  async snapshot(userId?: string): Promise<QueueSnapshot> {
    const running: RunningJobInfo[] = [...this.running.values()].map((run) => ({
      job: copy(run.job),
      step: run.step,
      totalSteps: run.totalSteps,
    }));
    const guilds = new Map<string, { guildId: string; queued: number; running: number }>();
    for (const [guildId, queued] of this.waiting.countsByGuild()) guilds.set(guildId, { guildId, queued, running: 0 });
    for (const run of this.running.values()) {
      const entry = guilds.get(run.job.owner.guildId) ?? { guildId: run.job.owner.guildId, queued: 0, running: 0 };
      entry.running += 1;
      guilds.set(entry.guildId, entry);
    }
    const user: JobStanding[] = [];
    if (userId !== undefined) {
      for (const run of this.running.values()) if (run.job.owner.userId === userId) user.push({ job: copy(run.job), position: 0 });
      this.waiting.order().forEach((w, i) => {
        if (w.userId === userId) user.push({ job: copy(w.job), position: i + 1 });
      });
    }
    return { running, queuedTotal: this.waiting.size, guilds: [...guilds.values()], user };
  }

  async activeCounts(guildId: string, userId: string): Promise<{ guild: number; user: number }> {
    let guild = 0;
    let user = 0;
    const all = [...this.running.values()].map((r) => r.job).concat(this.waiting.order().map((w) => w.job));
    for (const job of all) {
      if (job.owner.guildId !== guildId) continue;
      guild += 1;
      if (job.owner.userId === userId) user += 1;
    }
    return { guild, user };
  }

  async updateMeta(jobId: string, patch: JsonObject): Promise<JobRecord> {
    const active = this.activeRecord(jobId);
    if (active) {
      // The in-memory record is the one the worker writes, so the change goes there first.
      Object.assign(active.meta, patch);
      await this.store.save(active);
      return copy(active);
    }
    const updated = await this.store.update(jobId, (job) => ({ ...job, meta: { ...job.meta, ...patch } }));
    if (!updated) throw new JobNotFoundError(jobId);
    return updated;
  }

  /** The one pipeline worker of this process: always alive while the queue runs; its heartbeat is now. */
  async workers(): Promise<WorkerInfo[]> {
    const running = [...this.running.values()][0];
    return [
      {
        id: 'local',
        host: hostname(),
        pid: process.pid,
        ...this.identity,
        device: null,
        state: this.state === 'closed' ? 'gone' : running ? 'busy' : 'idle',
        ...(running ? { jobId: running.job.id } : {}),
        jobsDone: this.jobsDone,
        lastHeartbeat: this.clock(),
      },
    ];
  }

  /** Resolves when nothing runs and nothing waits (tests, graceful drains). */
  async idle(): Promise<void> {
    while (this.running.size > 0 || (this.waiting.size > 0 && this.state === 'started')) {
      await this.worker.onIdle();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private activeRecord(jobId: string): JobRecord | undefined {
    return this.waiting.get(jobId)?.job ?? this.running.get(jobId)?.job;
  }

  private standingNow(jobId: string): JobStanding | undefined {
    const run = this.running.get(jobId);
    if (run) return { job: copy(run.job), position: 0 };
    const waiting = this.waiting.get(jobId);
    if (waiting) return { job: copy(waiting.job), position: this.waiting.positions().get(jobId) ?? null };
    return undefined;
  }

  /** Hands the next job to the worker whenever it is free (or, batching, whenever its rows fit beside the running ones). */
  private dispatch(): void {
    while (this.state === 'started') {
      const head = this.waiting.peek();
      if (!head || !this.fitsBesideRunning(head.job)) break;
      const next = this.waiting.next()!;
      this.announced.delete(next.id);
      const job = next.job;
      job.status = 'running';
      job.startedAt = this.clock();
      job.attempts += 1;
      let settle!: () => void;
      const run: Run = {
        job,
        controller: new AbortController(),
        step: 0,
        totalSteps: job.params.steps,
        interruptedByShutdown: false,
        settled: new Promise<void>((resolve) => (settle = resolve)),
      };
      this.running.set(job.id, run);
      void this.worker.add(async () => {
        try {
          await this.execute(run);
        } finally {
          if (!run.interruptedByShutdown) this.jobsDone += 1;
          this.running.delete(job.id);
          settle();
          this.dispatch();
        }
      });
    }
    this.announcePositions();
  }

  /** Whether `job` may start now: nothing runs, or (continuous batching) its rows fit beside the running jobs'. */
  private fitsBesideRunning(job: JobRecord): boolean {
    if (this.running.size === 0) return true;
    let rows = jobRows(job);
    for (const run of this.running.values()) rows += jobRows(run.job);
    return rows <= this.maxBatchRows;
  }

  private async execute(run: Run): Promise<void> {
    const { job, controller } = run;
    const startedAt = this.clock();
    try {
      delete job.error;
      await this.store.save(job);
      // Logged once, by the event's listener (the bot logs 'job started' with the guild and attempt).
      this.events.emit('started', { job: copy(job) });
      controller.signal.throwIfAborted();
      const output = await this.generator.generate(toGenerationRequest(job), {
        signal: controller.signal,
        jobId: job.id,
        onProgress: (progress) => {
          run.step = progress.step;
          run.totalSteps = progress.totalSteps;
          this.events.emit('progress', { job: copy(job), progress });
        },
      });
      // An engine that finished despite the abort still loses to the cancel the user asked for.
      controller.signal.throwIfAborted();
      await this.complete(job, output, this.clock() - startedAt);
    } catch (error) {
      await this.settleFailure(run, error);
    }
  }

  private async complete(job: JobRecord, output: GeneratedImages, durationMs: number): Promise<void> {
    const files: string[] = [];
    if (this.outputDir) {
      await mkdir(this.outputDir, { recursive: true });
      for (const [i, image] of output.images.entries()) {
        const name = `${job.id}-${i + 1}.png`;
        await writeFile(join(this.outputDir, name), image.png);
        files.push(name);
      }
    }
    job.status = 'done';
    job.finishedAt = this.clock();
    job.result = {
      seeds: output.images.map((image) => image.seed.toString()),
      nsfw: output.images.map((image) => image.nsfw ?? null),
      files,
      durationMs,
      ...(output.model !== undefined ? { model: output.model } : {}),
      ...(output.promptTokens !== undefined ? { promptTokens: output.promptTokens } : {}),
    };
    await this.store.finish(job);
    this.events.emit('finished', { job: copy(job), images: output.images });
  }

  private async settleFailure(run: Run, error: unknown): Promise<void> {
    const { job } = run;
    if (run.interruptedByShutdown && run.cancelledBy === undefined) {
      // Left as 'running' in the store on purpose: the next start reruns it first.
      this.logger?.info({ jobId: job.id }, 'job interrupted by shutdown; it reruns at the next start');
      return;
    }
    try {
      job.finishedAt = this.clock();
      if (run.cancelledBy !== undefined) {
        job.status = 'cancelled';
        job.cancelledBy = run.cancelledBy;
        await this.store.finish(job);
        this.events.emit('cancelled', { job: copy(job), by: run.cancelledBy, wasRunning: true });
        this.logger?.info({ jobId: job.id, by: run.cancelledBy }, 'running job cancelled');
        return;
      }
      job.status = 'failed';
      job.error = describeFailure(error);
      if (isImagineError(error)) this.logger?.warn({ jobId: job.id, code: error.code, reason: error.message }, 'job failed');
      else this.logger?.error({ jobId: job.id, err: error }, 'job failed with an internal error');
      await this.store.finish(job);
      this.events.emit('failed', { job: copy(job), error: job.error });
    } catch (storeError) {
      // The worker must carry on even when the store is unwell; the job reruns after a restart.
      this.logger?.error({ jobId: job.id, err: storeError }, 'could not record the end of a job');
    }
  }

  private announcePositions(): void {
    const positions = this.waiting.positions();
    for (const [id, position] of positions) {
      if (this.announced.get(id) === position) continue;
      this.announced.set(id, position);
      const waiting = this.waiting.get(id);
      if (waiting) this.events.emit('position', { job: copy(waiting.job), position });
    }
    for (const id of this.announced.keys()) if (!positions.has(id)) this.announced.delete(id);
  }
}

function waitingOf(job: JobRecord): Waiting {
  return { id: job.id, guildId: job.owner.guildId, userId: job.owner.userId, job };
}

function copy(job: JobRecord): JobRecord {
  return structuredClone(job);
}

/** Whether `actor` may cancel or delete `job`: its requester, or an admin. The Discord side uses it for Delete. */
export function canActOn(job: JobRecord, actor: CancelActor): boolean {
  return actor.isAdmin || actor.userId === job.owner.userId;
}

function assertMayTouch(job: JobRecord, actor: CancelActor): void {
  if (!canActOn(job, actor)) throw new NotYourJobError(job.id);
}

export function toGenerationRequest(job: Pick<JobRecord, 'params'>): GenerationRequest {
  return { ...job.params, seed: BigInt(job.params.seed) };
}

/** A failed job's error as users see it: an ImagineError's own sentence, else a generic one (details go to the log). */
export function describeFailure(error: unknown): JobError {
  if (isImagineError(error)) return { code: error.code, message: error.message };
  return { code: 'engine_failed', message: 'The image engine failed on this job.' };
}

/** The UNet rows a job takes in a continuous batch: two per image with guidance, one without. */
function jobRows(job: JobRecord): number {
  return rowsOf(Math.max(1, job.params.count), job.params.cfg);
}
