/**
 * The JobQueue contract on Redis, for the bot process: jobs are recorded in the JobStore (keyv on Redis), wait in
 * the fair waiting room (fair-store.ts), are promoted into BullMQ by the Dispatcher while a worker is free, and run
 * on `imagine-bot worker` processes anywhere. This process turns BullMQ's events into the queue's events:
 * active → started, progress → progress, completed → finished / failed / cancelled (the worker's outcome).
 *
 * Several bot processes (gateway shards) share one Redis: each follows only the jobs its own store index names (the
 * jobs it queued, or restored after its restart: `JobStore.owns`), so the process that queued a job shows its progress
 * and posts its end, and the events of other processes' jobs are left to them. While it is down, its jobs keep
 * running and their ends wait in BullMQ and Redis; when it starts again it reads its index and delivers them.
 *
 * Exactly once: a job's end is delivered by the process that wins SET NX on its `delivered` key; a restarted bot, or
 * a second worker that finished the same job (a false stall) loses and posts nothing. A bot that starts reads the
 * active jobs of its store and settles each with what Redis says (finished while it was down, running, waiting, or
 * lost from Redis and queued again).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Queue, QueueEvents, type RedisClient } from 'bullmq';
import type { Logger } from 'pino';
import { TypedEmitter } from '../emitter.js';
import { JobNotActiveError, JobNotFoundError, NotYourJobError, QueueClosedError } from '../errors.js';
import type { SchedulableJob } from '../fair-scheduler.js';
import type { JobStore } from '../job-store.js';
import { canActOn } from '../local-queue.js';
import { RedisInputImageStore, type InputImageStore } from '../inputs.js';
import { KeyedSerializer } from '../serial.js';
import type {
  CancelActor,
  EnqueueInput,
  GeneratedImage,
  JobQueue,
  JobQueueEventName,
  JobQueueEvents,
  JobQueueListener,
  JobRecord,
  JobStanding,
  JsonObject,
  QueueSnapshot,
  RunningJobInfo,
  ShardInfo,
  ShardReport,
  WorkerInfo,
} from '../types.js';
import { Coalescer } from './coalesce.js';
import { watchConnection } from './connection-log.js';
import { Dispatcher, readWorkers } from './dispatcher.js';
import { RedisFairStore, setIfAbsent } from './fair-store.js';
import {
  BULL_QUEUE_NAME,
  DEFAULT_KEY_PREFIX,
  MARKER_TTL_MS,
  connectionFor,
  decodeProgress,
  redisKeys,
  type RedisJobData,
  type RedisKeys,
  type RedisOutcome,
} from './protocol.js';
import { resolveTimings, type RedisTimings } from './worker.js';

export interface RedisJobQueueOptions extends RedisTimings {
  /** redis:// or rediss:// URL of the Redis the workers use. */
  url: string;
  /** Key prefix shared with the workers. Default "imagine". */
  prefix?: string;
  store: JobStore;
  logger?: Logger;
  clock?: () => number;
}

/** What one settle() has done so far, kept across its retries. */
interface SettleProgress {
  /** Whether this process holds the delivery claim (undefined: not asked yet). */
  claimed: boolean | undefined;
  /** Whether this settle moved the job's record from active to its end. */
  ended: boolean;
  attempt: number;
}

interface RunningEntry {
  job: JobRecord;
  step: number;
  totalSteps: number;
}

/** What the engine failure of BullMQ itself (a job that stalled on every worker) looks like to users. */
const GAVE_UP = { code: 'engine_failed', message: 'The image engine failed on this job.' };

export class RedisJobQueue implements JobQueue {
  private readonly options: RedisJobQueueOptions;
  private readonly timings: Required<RedisTimings>;
  private readonly keys: RedisKeys;
  /** Where the bot stores img2img starting images for the workers (keys on this Redis). */
  readonly inputImages: InputImageStore;
  private readonly store: JobStore;
  private readonly logger: Logger | undefined;
  private readonly clock: () => number;
  private readonly events: TypedEmitter<JobQueueEvents>;
  /** This process's name in delivery claims. */
  private readonly botId = `bot:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly perJob = new KeyedSerializer();
  private readonly running = new Map<string, RunningEntry>();
  private readonly announced = new Map<string, number>();
  private readonly ended = new Map<string, Array<(job: JobRecord) => void>>();
  /** The shards this process reported last; marked gone when it closes. */
  private reportedShards: readonly ShardReport[] = [];
  private readonly positionsRound = new Coalescer(() => this.announcePositions());
  private queue: Queue<RedisJobData> | undefined;
  private queueEvents: QueueEvents | undefined;
  private client: RedisClient | undefined;
  private fair: RedisFairStore | undefined;
  private dispatcher: Dispatcher | undefined;
  private tick: NodeJS.Timeout | undefined;
  private restored: Promise<void> = Promise.resolve();
  private state: 'new' | 'started' | 'closed' = 'new';

  constructor(options: RedisJobQueueOptions) {
    this.options = options;
    this.timings = resolveTimings(options);
    this.keys = redisKeys(options.prefix ?? DEFAULT_KEY_PREFIX);
    this.inputImages = new RedisInputImageStore(() => this.requireClient(), this.keys.input);
    this.store = options.store;
    this.logger = options.logger;
    this.clock = options.clock ?? Date.now;
    this.events = new TypedEmitter<JobQueueEvents>(options.logger);
  }

  on<K extends JobQueueEventName>(event: K, listener: JobQueueListener<K>): () => void {
    return this.events.on(event, listener);
  }

  off<K extends JobQueueEventName>(event: K, listener: JobQueueListener<K>): void {
    this.events.off(event, listener);
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('RedisJobQueue.start() may be called once.');
    const connection = connectionFor(this.options.url);
    const prefix = this.keys.bullPrefix;
    this.queue = new Queue<RedisJobData>(BULL_QUEUE_NAME, { connection, prefix });
    this.queue.on('error', (error) => this.logger?.warn({ err: error }, 'redis queue error'));
    this.client = await this.queue.client;
    watchConnection(this.client, this.logger, 'bot');
    this.fair = new RedisFairStore(this.client, this.keys);
    this.dispatcher = new Dispatcher({
      client: this.client,
      queue: this.queue,
      fair: this.fair,
      keys: this.keys,
      goneAfterMs: this.timings.goneAfterMs,
      ...(this.logger ? { logger: this.logger } : {}),
    });
    // Events are listened to before the store is read, and handled after: nothing that ends meanwhile is missed.
    let restoredDone!: () => void;
    this.restored = new Promise((resolve) => (restoredDone = resolve));
    const events = new QueueEvents(BULL_QUEUE_NAME, { connection, prefix });
    this.queueEvents = events;
    events.on('error', (error) => this.logger?.warn({ err: error }, 'redis queue events error'));
    // Starts are announced in the order BullMQ handed the jobs out, one at a time.
    // Every bot process hears every job's events; each acts on its own jobs only (ownership is read after the restore).
    const own = (jobId: string, task: () => Promise<void>) => this.handle(jobId, async () => (this.store.owns(jobId) ? task() : undefined));
    events.on('active', ({ jobId }) => own(jobId, () => this.perJob.run('start order', () => this.onActive(jobId))));
    events.on('progress', ({ jobId, data }) => void this.restored.then(() => this.onProgress(jobId, data)));
    events.on('completed', ({ jobId, returnvalue }) => own(jobId, () => this.settle(jobId, parseOutcome(returnvalue))));
    events.on('failed', ({ jobId, failedReason }) =>
      own(jobId, async () => {
        this.logger?.warn({ jobId, reason: failedReason }, 'job given up by the workers');
        await this.settle(jobId, { kind: 'failed', error: GAVE_UP, worker: '' });
      }),
    );
    events.on('stalled', ({ jobId }) =>
      own(jobId, async () => void this.logger?.warn({ jobId }, 'job stalled (its worker stopped answering); it reruns on another worker')),
    );
    await events.waitUntilReady();
    try {
      await this.restore();
    } finally {
      restoredDone();
    }
    this.state = 'started';
    this.tick = setInterval(() => this.kick(), this.timings.heartbeatMs);
    this.kick();
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.tick) clearInterval(this.tick);
    await this.markShardsGone().catch((error: unknown) => this.logger?.warn({ err: error }, 'could not mark the shards gone'));
    // Running jobs keep running on their workers; the next start delivers what ended meanwhile.
    await this.queueEvents?.close();
    await this.queue?.close();
  }

  async enqueue(input: EnqueueInput): Promise<JobStanding> {
    if (this.state !== 'started') throw new QueueClosedError();
    const job = await this.store.create(input, this.clock());
    await this.requireFair().push(dataOf(job));
    const position = (await this.positions()).get(job.id) ?? 1;
    this.announced.set(job.id, position);
    this.events.emit('queued', { job: structuredClone(job), position, restored: false });
    this.logger?.info({ jobId: job.id, guildId: job.owner.guildId, userId: job.owner.userId, position }, 'job queued');
    this.kick();
    return { job, position };
  }

  async cancel(jobId: string, actor: CancelActor): Promise<JobRecord> {
    const job = await this.store.get(jobId);
    if (!job) throw new JobNotFoundError(jobId);
    if (!canActOn(job, actor)) throw new NotYourJobError(jobId);
    if (job.status !== 'queued' && job.status !== 'running') throw new JobNotActiveError(jobId, job.status);
    const waiters = this.ended.get(jobId) ?? [];
    this.ended.set(jobId, waiters);
    const ended = new Promise<JobRecord>((resolve) => waiters.push(resolve));
    // It may have ended while it was being read: then nothing will settle it again.
    const now = await this.store.get(jobId);
    if (now && !isActive(now)) {
      for (const resolve of waiters.splice(0)) resolve(now);
      throw new JobNotActiveError(jobId, now.status);
    }
    const client = this.requireClient();
    // The flag first: a dispatcher promoting this very job right now hands the worker a job it will not run.
    await client.set(this.keys.cancel(jobId), actor.userId, { PX: MARKER_TTL_MS });
    const waiting = (await this.requireFair().remove(jobId)) || (await this.removeFromBullWait(jobId));
    if (waiting) {
      await this.handle(jobId, () => this.settle(jobId, { kind: 'cancelled', by: actor.userId, worker: '' }));
    } else {
      const bullJob = await this.requireQueue().getJob(jobId);
      // Neither waiting nor on BullMQ (lost with Redis data): nothing will report on it, so it ends here.
      if (!bullJob) await this.handle(jobId, () => this.settle(jobId, { kind: 'cancelled', by: actor.userId, worker: '' }));
      // Else a worker runs it: it sees the flag between steps and returns the outcome 'cancelled'.
    }
    return ended;
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.store.get(jobId);
  }

  async standing(jobId: string): Promise<JobStanding | undefined> {
    const job = await this.store.get(jobId);
    if (!job) return undefined;
    if (job.status !== 'queued' && job.status !== 'running') return { job, position: null };
    if (await this.isRunning(jobId)) return { job, position: 0 };
    return { job, position: (await this.positions()).get(jobId) ?? null };
  }

  async snapshot(userId?: string): Promise<QueueSnapshot> {
    const running = await this.runningInfos();
    const waiting = await this.waitingOrder();
    const guilds = new Map<string, { guildId: string; queued: number; running: number }>();
    const entry = (guildId: string) => {
      const found = guilds.get(guildId) ?? { guildId, queued: 0, running: 0 };
      guilds.set(guildId, found);
      return found;
    };
    for (const w of waiting) entry(w.guildId).queued += 1;
    for (const r of running) entry(r.job.owner.guildId).running += 1;
    const user: JobStanding[] = [];
    if (userId !== undefined) {
      for (const r of running) if (r.job.owner.userId === userId) user.push({ job: r.job, position: 0 });
      for (const [i, w] of waiting.entries()) {
        if (w.userId !== userId) continue;
        const job = await this.store.get(w.id);
        if (job) user.push({ job, position: i + 1 });
      }
    }
    return { running, queuedTotal: waiting.length, guilds: [...guilds.values()], user };
  }

  async activeCounts(guildId: string, userId: string): Promise<{ guild: number; user: number }> {
    const active: SchedulableJob[] = [...(await this.waitingOrder()), ...(await this.runningInfos()).map((r) => ({ id: r.job.id, ...r.job.owner }))];
    let guild = 0;
    let user = 0;
    for (const job of active) {
      if (job.guildId !== guildId) continue;
      guild += 1;
      if (job.userId === userId) user += 1;
    }
    return { guild, user };
  }

  async updateMeta(jobId: string, patch: JsonObject): Promise<JobRecord> {
    const updated = await this.store.update(jobId, (job) => ({ ...job, meta: { ...job.meta, ...patch } }));
    if (!updated) throw new JobNotFoundError(jobId);
    const run = this.running.get(jobId);
    if (run) run.job = updated;
    return updated;
  }

  async workers(): Promise<WorkerInfo[]> {
    return (await readWorkers(this.requireClient(), this.keys, this.timings.goneAfterMs)).map(({ lastJobIds: _internal, jobSlots: _slots, ...info }) => info);
  }

  async reportShards(shards: readonly ShardReport[]): Promise<void> {
    if (shards.length === 0 || this.state === 'closed') return;
    this.reportedShards = shards;
    await this.writeShards(shards, false);
  }

  async shards(): Promise<ShardInfo[]> {
    const all = await this.requireClient().hgetall(this.keys.shards);
    const now = this.clock();
    const records = Object.values(all).flatMap((raw) => parseShardRecord(raw) ?? []);
    // The newest report says the shard count in use; records of an earlier layout (another count) are history.
    const newest = records.reduce<ShardRecord | undefined>((best, r) => (!best || r.lastHeartbeat > best.lastHeartbeat ? r : best), undefined);
    const shards: ShardInfo[] = [];
    for (const info of records) {
      if (info.count !== newest?.count || now - info.lastHeartbeat > LONG_GONE_MS) continue;
      const gone = info.closed || now - info.lastHeartbeat > this.timings.goneAfterMs;
      const { closed: _closed, ...shown } = info;
      shards.push({ ...shown, state: gone ? 'gone' : 'live' });
    }
    return shards.sort((a, b) => a.id - b.id);
  }

  private async markShardsGone(): Promise<void> {
    if (this.reportedShards.length > 0 && this.client) await this.writeShards(this.reportedShards, true);
  }

  /** One field per shard id: a restarted process (or another process taking the shard) replaces the record. */
  private async writeShards(shards: readonly ShardReport[], closed: boolean): Promise<void> {
    const lastHeartbeat = this.clock();
    const fields: Record<string, string> = {};
    for (const shard of shards) {
      const record: ShardRecord = { ...shard, host: hostname(), pid: process.pid, lastHeartbeat, closed };
      fields[String(shard.id)] = JSON.stringify(record);
    }
    await this.requireClient().hset(this.keys.shards, fields);
  }

  /** Runs one job-event handler after the restore, one at a time per job; failures are logged. */
  private handle(jobId: string, task: () => Promise<void>): Promise<void> {
    return this.restored
      .then(() => this.perJob.run(jobId, task))
      .catch((error: unknown) => this.logger?.error({ jobId, err: error }, 'could not handle a job event'));
  }

  private kick(): void {
    if (this.state !== 'started') return;
    this.dispatcher
      ?.dispatch()
      .then(() => this.positionsRound.run())
      .catch((error: unknown) => this.logger?.warn({ err: error }, 'dispatch failed'));
  }

  private async onActive(jobId: string): Promise<void> {
    const now = this.clock();
    const job = await this.store.update(jobId, (current) =>
      isActive(current) ? { ...current, status: 'running', startedAt: now, attempts: current.attempts + 1 } : current,
    );
    if (!job || job.status !== 'running') return;
    this.running.set(jobId, { job, step: 0, totalSteps: job.params.steps });
    this.announced.delete(jobId);
    this.events.emit('started', { job: structuredClone(job) });
    void this.positionsRound.run().catch(() => undefined);
  }

  private onProgress(jobId: string, data: unknown): void {
    const run = this.running.get(jobId);
    const progress = decodeProgress(data);
    if (!run || !progress) return;
    run.step = progress.step;
    run.totalSteps = progress.totalSteps;
    this.events.emit('progress', { job: structuredClone(run.job), progress });
  }

  /**
   * Records a job's end and delivers it once (see the file comment). When Redis or the store fails half-way (a Redis
   * restart), it tries again with what it already did remembered: the claim it holds, and whether it already moved
   * the record to its end; so the end is delivered once rather than never or twice.
   */
  private async settle(jobId: string, outcome: RedisOutcome, done: SettleProgress = { claimed: undefined, ended: false, attempt: 1 }): Promise<void> {
    try {
      done.claimed ??= await setIfAbsent(this.requireClient(), this.keys.delivered(jobId), this.botId, MARKER_TTL_MS);
      await this.record(jobId, outcome, done);
    } catch (error) {
      if (done.attempt >= 20 || this.state === 'closed') throw error;
      this.logger?.warn({ jobId, err: error, attempt: done.attempt }, 'could not record a job end yet; retrying');
      const delay = Math.min(5000, this.timings.heartbeatMs * done.attempt);
      done.attempt += 1;
      setTimeout(() => void this.handle(jobId, () => this.settle(jobId, outcome, done)), delay).unref();
    }
  }

  private async record(jobId: string, outcome: RedisOutcome, done: SettleProgress): Promise<void> {
    const claimed = done.claimed === true;
    const images = claimed && outcome.kind === 'done' ? await this.readImages(jobId, outcome) : undefined;
    const now = this.clock();
    let lost = false;
    const job = await this.store.update(jobId, (current) => {
      if (!isActive(current)) return current;
      done.ended = true;
      const base = { ...current, finishedAt: now };
      delete base.error;
      if (outcome.kind === 'cancelled') return { ...base, status: 'cancelled', cancelledBy: outcome.by };
      if (outcome.kind === 'failed') return { ...base, status: 'failed', error: outcome.error };
      if (claimed && !images) {
        lost = true;
        return { ...base, status: 'failed', error: { code: 'result_lost', message: 'The finished images expired before they could be posted.' } };
      }
      return {
        ...base,
        status: 'done',
        result: {
          seeds: outcome.seeds,
          nsfw: outcome.nsfw,
          files: [],
          durationMs: outcome.durationMs,
          ...(outcome.model !== undefined ? { model: outcome.model } : {}),
          ...(outcome.promptTokens !== undefined ? { promptTokens: outcome.promptTokens } : {}),
        },
      };
    });
    this.running.delete(jobId);
    this.announced.delete(jobId);
    if (!job) return void this.logger?.warn({ jobId }, 'a job ended that this store does not know');
    await this.store.finish(job);
    if (!claimed || !done.ended) {
      // Another process (or this one, for an earlier report of the same job) delivered it.
      this.logger?.info({ jobId, worker: outcome.worker }, 'job end already delivered; not posted again');
    } else if (job.status === 'done' && images) {
      this.events.emit('finished', { job: structuredClone(job), images });
    } else if (job.status === 'cancelled') {
      this.logger?.info({ jobId, by: job.cancelledBy }, outcome.worker ? 'running job cancelled' : 'queued job cancelled');
      this.events.emit('cancelled', { job: structuredClone(job), by: job.cancelledBy ?? '', wasRunning: outcome.worker !== '' });
    } else if (job.status === 'failed' && job.error) {
      if (lost) this.logger?.error({ jobId }, 'result images missing from Redis');
      this.events.emit('failed', { job: structuredClone(job), error: job.error });
    }
    for (const resolve of this.ended.get(jobId) ?? []) resolve(structuredClone(job));
    this.ended.delete(jobId);
    this.kick();
  }

  private async readImages(jobId: string, outcome: Extract<RedisOutcome, { kind: 'done' }>): Promise<GeneratedImage[] | undefined> {
    const images: GeneratedImage[] = [];
    for (let i = 0; i < outcome.images; i++) {
      const base64 = await this.requireClient().get(this.keys.result(jobId, i));
      if (base64 === null) return undefined;
      const nsfw = outcome.nsfw[i];
      images.push({ png: Buffer.from(base64, 'base64'), seed: BigInt(outcome.seeds[i] ?? '0'), ...(typeof nsfw === 'boolean' ? { nsfw } : {}) });
    }
    return images;
  }

  /**
   * Settles the store's active jobs with what Redis says: ended while no bot listened → delivered now; running on a
   * worker → running; waiting → queued; unknown to Redis (data lost without AOF, or a promotion cut short) → queued
   * again, first in line when it had started.
   */
  private async restore(): Promise<void> {
    const jobs = await this.store.loadActive();
    const queue = this.requireQueue();
    const fair = this.requireFair();
    const ended: Array<[string, RedisOutcome]> = [];
    const announce: Array<{ job: JobRecord; running: boolean }> = [];
    for (const job of jobs) {
      const bullJob = await queue.getJob(job.id);
      const state = bullJob ? await bullJob.getState() : 'unknown';
      if (bullJob && state === 'completed') ended.push([job.id, parseOutcome(bullJob.returnvalue)]);
      else if (state === 'failed') ended.push([job.id, { kind: 'failed', error: GAVE_UP, worker: '' }]);
      else if (state === 'active') {
        this.running.set(job.id, { job, step: 0, totalSteps: job.params.steps });
        announce.push({ job, running: true });
      } else if (bullJob && state !== 'unknown') announce.push({ job, running: false });
      else {
        if (!(await fair.has(job.id))) {
          await fair.push(dataOf(job), { priority: job.status === 'running' });
          this.logger?.warn({ jobId: job.id }, 'job missing from Redis (data lost, or a promotion was cut short); queued again');
        }
        announce.push({ job, running: false });
      }
    }
    const positions = await this.positions();
    for (const { job, running } of announce) {
      const position = running ? 0 : (positions.get(job.id) ?? 1);
      if (!running) this.announced.set(job.id, position);
      this.events.emit('queued', { job: structuredClone(job), position, restored: true });
      if (running) this.events.emit('started', { job: structuredClone(job) });
    }
    if (jobs.length > 0) this.logger?.info({ jobs: jobs.length, ended: ended.length }, 'restored active jobs');
    for (const [jobId, outcome] of ended) await this.perJob.run(jobId, () => this.settle(jobId, outcome));
  }

  /** Promoted jobs BullMQ has not handed out yet (oldest first), then the fair waiting room in its order. */
  private async waitingOrder(): Promise<SchedulableJob[]> {
    const promoted = await this.requireQueue().getWaiting();
    promoted.sort((a, b) => a.timestamp - b.timestamp);
    const fair = await this.requireFair().scheduler();
    return [...promoted.map((j) => ({ id: j.data.id, ...j.data.owner })), ...fair.order()];
  }

  private async positions(): Promise<Map<string, number>> {
    const positions = new Map<string, number>();
    (await this.waitingOrder()).forEach((job, i) => positions.set(job.id, i + 1));
    return positions;
  }

  private async isRunning(jobId: string): Promise<boolean> {
    const bullJob = await this.requireQueue().getJob(jobId);
    return bullJob !== undefined && (await bullJob.getState()) === 'active';
  }

  private async runningInfos(): Promise<RunningJobInfo[]> {
    const active = await this.requireQueue().getActive();
    const infos: RunningJobInfo[] = [];
    for (const bullJob of active) {
      const id = bullJob.data.id;
      const known = this.running.get(id);
      const job = known?.job ?? (await this.store.get(id));
      if (!job) continue;
      infos.push({ job: structuredClone(job), step: known?.step ?? 0, totalSteps: known?.totalSteps ?? job.params.steps });
    }
    return infos;
  }

  private async announcePositions(): Promise<void> {
    if (this.state !== 'started' || this.announced.size === 0) return;
    const positions = await this.positions();
    for (const [id, position] of positions) {
      const before = this.announced.get(id);
      if (before === undefined || before === position) continue;
      this.announced.set(id, position);
      const job = await this.store.get(id);
      if (job && isActive(job)) this.events.emit('position', { job, position });
    }
    for (const id of this.announced.keys()) if (!positions.has(id)) this.announced.delete(id);
  }

  private async removeFromBullWait(jobId: string): Promise<boolean> {
    const bullJob = await this.requireQueue().getJob(jobId);
    if (!bullJob || !(await bullJob.isWaiting())) return false;
    try {
      await bullJob.remove();
      return true;
    } catch {
      // A worker took it in the meantime (it is locked): the worker reports the cancel.
      return false;
    }
  }

  private requireQueue(): Queue<RedisJobData> {
    if (!this.queue) throw new QueueClosedError();
    return this.queue;
  }

  private requireClient(): RedisClient {
    if (!this.client) throw new QueueClosedError();
    return this.client;
  }

  private requireFair(): RedisFairStore {
    if (!this.fair) throw new QueueClosedError();
    return this.fair;
  }
}

/** Shard records silent this long are not listed any more (a shard set that is not run any more). */
const LONG_GONE_MS = 24 * 3600 * 1000;

type ShardRecord = Omit<ShardInfo, 'state'> & { closed: boolean };

function parseShardRecord(raw: string): ShardRecord | undefined {
  try {
    const value = JSON.parse(raw) as Partial<ShardRecord>;
    if (typeof value.id !== 'number' || typeof value.lastHeartbeat !== 'number') return undefined;
    return {
      id: value.id,
      count: typeof value.count === 'number' ? value.count : 1,
      guilds: typeof value.guilds === 'number' ? value.guilds : 0,
      pingMs: typeof value.pingMs === 'number' ? value.pingMs : null,
      connected: value.connected === true,
      host: typeof value.host === 'string' ? value.host : '?',
      pid: typeof value.pid === 'number' ? value.pid : 0,
      lastHeartbeat: value.lastHeartbeat,
      closed: value.closed === true,
    };
  } catch {
    return undefined;
  }
}

function isActive(job: JobRecord): boolean {
  return job.status === 'queued' || job.status === 'running';
}

function dataOf(job: JobRecord): RedisJobData {
  return { id: job.id, owner: job.owner, params: job.params };
}

function parseOutcome(value: unknown): RedisOutcome {
  const parsed = typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  if (typeof parsed === 'object' && parsed !== null && 'kind' in parsed) return parsed as RedisOutcome;
  return { kind: 'failed', error: GAVE_UP, worker: '' };
}
