/**
 * The delivery outbox: every interaction the bot acknowledged for a job is answered exactly once, across Discord
 * errors and restarts.
 *
 *  - Persist before acknowledging: a record keyed by the interaction id (reply target with its token and time, who
 *    asked, the admitted parameters) is written before the deferral goes out (`accept`), then linked to the job
 *    (`linked`). At start-up (`resume`), a record whose job was never queued is queued again; one whose request was
 *    still being checked is answered with a clear message.
 *  - Durable results: a finished job's PNGs are written to `<dataDir>/results` and the record says so before any
 *    post. One loop sends due records; a 5xx or a network error (ECONNRESET, EPIPE) is retried with exponential
 *    backoff and jitter (a 429's Retry-After is waited out by discord.js's REST queue, or taken from the error), and
 *    after `CHANNEL_FALLBACK_AFTER` failed tries on the interaction route the result goes to a channel message that
 *    replies to the requester.
 *  - Exactly once: the record is removed only after Discord took the post. Editing the reply again is idempotent; a
 *    channel post carries a nonce with `enforce_nonce`, so posting again after a crash returns the first message; and
 *    before switching to the channel the reply is read back, in case an edit reached Discord but its answer did not.
 *
 * Records live in keyv (namespace `deliveries`, all pending records in one value written with group commit); one
 * bot process owns them.
 */
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Keyv } from 'keyv';
import { isImagineError } from '../errors.js';
import type { Logger } from '../log.js';
import { lineageOf, type GeneratedImage, type JobLineage, type JobParams, type JobQueue, type JobRecord } from '../queue/index.js';
import type { GuildRules, Requester } from './backend.js';
import { isTransientDiscordError, loggableError, retryAfterMs } from './errors.js';
import { replyTargetToJson } from './interaction.js';
import type { MessagePayload, ReplyTarget } from './job-message.js';
import type { JobPresenter } from './presenter.js';
import { presentedJob, replyTargetOf } from './queue-events.js';

/** Failed tries on the interaction route before the result goes to a channel message instead. */
export const CHANNEL_FALLBACK_AFTER = 3;
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 5 * 60_000;
/** Every pending record, in one value: keyv cannot list keys on every backend, and one write per change is cheapest. */
const PENDING_KEY = 'pending';

export const RESTARTED_WHILE_CHECKING = 'The bot restarted while it was checking this request; please run it again.';

type Outcome =
  | { kind: 'result'; files: string[]; seeds: string[]; nsfw: (boolean | null)[]; elapsedMs: number; modelName: string; promptTokens?: string }
  | { kind: 'failed'; reason: string }
  | { kind: 'cancelled' };

/** One acknowledged interaction that still owes its requester an answer. JSON as stored. */
export interface DeliveryRecord extends JobLineage {
  v: 1;
  /** The interaction id (or, for a job queued before this record existed, the job id). */
  key: string;
  reply: ReplyTarget;
  requester?: Requester;
  params?: JobParams;
  jobId?: string;
  outcome?: Outcome;
  /** Failed tries so far. */
  attempts: number;
  nextAttemptAt: number;
  createdAt: number;
}

export interface DeliveryOutboxOptions {
  keyv: Keyv;
  /** Where finished PNGs are written before any post: `<dataDir>/results`. */
  resultsDir: string;
  keepFinishedMs: number;
  presenter: JobPresenter;
  queue: JobQueue;
  rules: GuildRules;
  log: Logger;
  /** The model named under a result when the job record does not say. */
  modelName: string;
}

export class DeliveryOutbox {
  private readonly records = new Map<string, DeliveryRecord>();
  private writeChain: Promise<void> = Promise.resolve();
  private nextWrite: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private cleanupTimer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private closed = false;
  /** When this run read the records: a job that ended since is being delivered by this run's queue events. */
  private loadedAt = Number.POSITIVE_INFINITY;

  constructor(private readonly options: DeliveryOutboxOptions) {}

  /** Reads the pending records; before the queue starts, so restored jobs find theirs. */
  async load(): Promise<void> {
    this.loadedAt = Date.now();
    const stored = await this.options.keyv.get<unknown>(PENDING_KEY);
    for (const record of Array.isArray(stored) ? (stored as DeliveryRecord[]) : []) {
      if (record && typeof record === 'object' && record.v === 1 && typeof record.key === 'string') this.records.set(record.key, record);
    }
    if (this.records.size > 0) this.options.log.info({ pending: this.records.size }, 'pending deliveries loaded');
  }

  /**
   * Persists an interaction that is about to be acknowledged; returns how long that took (it is spent within
   * Discord's 3-second deadline). `params` is absent when the reply had to be deferred before the check finished.
   */
  async accept(key: string, init: JobLineage & { reply: ReplyTarget; requester: Requester; params?: JobParams }): Promise<number> {
    const startedAt = performance.now();
    const now = Date.now();
    await this.save({ v: 1, key, ...init, attempts: 0, nextAttemptAt: now, createdAt: now });
    return performance.now() - startedAt;
  }

  /** The admitted parameters of a request whose reply was deferred before its check finished. */
  async admitted(key: string, params: JobParams, replyMessageId: string | undefined): Promise<void> {
    const record = this.records.get(key);
    if (record) await this.save({ ...record, params, reply: withReplyId(record.reply, replyMessageId) });
  }

  /** The request was queued as `jobId`. */
  async linked(key: string, jobId: string, replyMessageId?: string): Promise<void> {
    const record = this.records.get(key);
    if (!record) return;
    const reply = withReplyId(record.reply, replyMessageId);
    if (record.jobId !== jobId || reply !== record.reply) await this.save({ ...record, jobId, reply });
  }

  /** The request was refused after all (the router answers it): nothing is owed. */
  async forget(key: string): Promise<void> {
    if (this.records.has(key)) await this.remove(key);
  }

  /** A queued or restored job: links it to its interaction's record when the link was not written before a crash. */
  queued(job: JobRecord): void {
    const key = deliveryKeyOf(job);
    const record = this.records.get(key);
    if (record && !record.jobId) this.linked(key, job.id).catch((error: unknown) => this.logStoreError(error, job.id));
  }

  /** Writes the PNGs to disk and records the result before anything is posted, then delivers. */
  async finished(job: JobRecord, images: readonly GeneratedImage[]): Promise<void> {
    await mkdir(this.options.resultsDir, { recursive: true });
    const files: string[] = [];
    for (const [i, image] of images.entries()) {
      const name = resultName(job.id, i + 1);
      const path = join(this.options.resultsDir, name);
      // Written whole or not at all: a crash mid-write leaves no truncated PNG to deliver.
      await writeFile(`${path}.tmp`, image.png);
      await rename(`${path}.tmp`, path);
      files.push(name);
    }
    await this.settle(job, {
      kind: 'result',
      files,
      seeds: images.map((image) => image.seed.toString()),
      nsfw: images.map((image) => image.nsfw ?? null),
      elapsedMs: job.result?.durationMs ?? 0,
      modelName: job.result?.model ?? this.options.modelName,
      ...(job.result?.promptTokens !== undefined ? { promptTokens: job.result.promptTokens } : {}),
    });
  }

  /**
   * A finished job's image (1-based) as it was written before delivery, while `delivery.keepFinishedHours` keeps it;
   * undefined once it is gone. Upscale and Vary start from it.
   */
  async readResult(jobId: string, image: number): Promise<Buffer | undefined> {
    try {
      return await readFile(join(this.options.resultsDir, resultName(jobId, image)));
    } catch {
      return undefined;
    }
  }

  async failed(job: JobRecord, reason: string): Promise<void> {
    await this.settle(job, { kind: 'failed', reason });
  }

  async cancelled(job: JobRecord): Promise<void> {
    await this.settle(job, { kind: 'cancelled' });
  }

  /**
   * After the queue restored its jobs: every record is either waiting for its job (still queued), due for delivery,
   * or answered now: a job that was never queued (or whose result was lost with the process) is queued again; a
   * request that was still being checked is told to run again.
   */
  async resume(): Promise<void> {
    for (const record of [...this.records.values()]) {
      if (record.outcome) continue;
      const job = record.jobId ? await this.options.queue.getJob(record.jobId) : undefined;
      if (job?.status === 'queued' || job?.status === 'running') continue;
      // Ended since this start (the Redis backend records, at start, the ends of jobs that finished while the bot was
      // down): its end event is on its way to this outbox, with the result. Only an end from before this start,
      // without an outcome here, means the result was lost with the last process.
      if (job?.finishedAt !== undefined && job.finishedAt >= this.loadedAt) continue;
      if (job?.status === 'failed') await this.settle(job, { kind: 'failed', reason: job.error?.message ?? 'The job failed.' });
      else if (job?.status === 'cancelled') await this.settle(job, { kind: 'cancelled' });
      else await this.resubmit(record, job);
    }
    this.startCleanup();
    this.kick();
  }

  /** Stops the loop; what is pending stays stored for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.cleanupTimer) clearInterval(this.cleanupTimer);
    this.timer = null;
    this.cleanupTimer = null;
    await this.running;
  }

  get pendingCount(): number {
    return this.records.size;
  }

  private async resubmit(record: DeliveryRecord, lost: JobRecord | undefined): Promise<void> {
    const log = this.options.log.child({ interactionId: record.key });
    if (!record.params || !record.requester) {
      log.info('acknowledged request had not been admitted before a restart; answering it');
      await this.save({ ...record, outcome: { kind: 'failed', reason: RESTARTED_WHILE_CHECKING }, nextAttemptAt: Date.now() });
      return;
    }
    try {
      const standing = await this.options.rules.submit(record.requester, record.params, {
        ...lineageOf(record),
        meta: { reply: replyTargetToJson(record.reply), channelNsfw: record.requester.channelNsfw, interactionId: record.key },
      });
      log.info({ jobId: standing.job.id, lostJobId: lost?.id }, 'acknowledged job queued again after a restart');
      await this.save({ ...record, jobId: standing.job.id });
    } catch (error) {
      const reason = isImagineError(error) ? error.message : 'The bot restarted and could not queue this request again; please run it again.';
      if (!isImagineError(error)) log.error({ err: loggableError(error) }, 'could not queue an acknowledged job again');
      await this.save({ ...record, outcome: { kind: 'failed', reason }, nextAttemptAt: Date.now() });
    }
  }

  private async settle(job: JobRecord, outcome: Outcome): Promise<void> {
    const key = deliveryKeyOf(job);
    const existing = this.records.get(key);
    const reply = replyTargetOf(job) ?? existing?.reply;
    if (!reply) return; // a job queued by something other than this bot (e.g. a CLI): nobody to answer
    const now = Date.now();
    const base: DeliveryRecord = existing ?? { v: 1, key, reply, attempts: 0, nextAttemptAt: now, createdAt: now };
    await this.save({ ...base, jobId: job.id, reply, outcome, nextAttemptAt: now });
    this.kick();
  }

  /** Runs the loop now (if it is not running) and again when the next record is due. */
  private kick(): void {
    if (this.closed || this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.running = this.sendDue()
      .catch((error: unknown) => this.options.log.error({ err: loggableError(error) }, 'delivery loop failed'))
      .finally(() => {
        this.running = null;
        this.scheduleNext();
      });
  }

  private scheduleNext(): void {
    if (this.closed) return;
    const due = [...this.records.values()].filter((r) => r.outcome).map((r) => r.nextAttemptAt);
    if (due.length === 0) return;
    this.timer = setTimeout(() => this.kick(), Math.max(0, Math.min(...due) - Date.now()));
    this.timer.unref();
  }

  private async sendDue(): Promise<void> {
    for (;;) {
      const now = Date.now();
      const record = [...this.records.values()].find((r) => r.outcome && r.nextAttemptAt <= now);
      if (!record || this.closed) return;
      await this.attempt(record);
    }
  }

  private async attempt(record: DeliveryRecord): Promise<void> {
    const outcome = record.outcome!;
    const log = this.options.log.child({ jobId: record.jobId, interactionId: record.key });
    const job = record.jobId ? await this.options.queue.getJob(record.jobId) : undefined;
    const reply = (job && replyTargetOf(job)) ?? record.reply;
    const viaChannel = record.attempts >= CHANNEL_FALLBACK_AFTER;
    const route = viaChannel ? 'POST /channels/:channel_id/messages' : 'PATCH /webhooks/:application_id/:token/messages/@original';
    let payload: MessagePayload;
    try {
      payload = await this.payloadOf(record, outcome, job, reply);
    } catch (error) {
      log.error({ err: loggableError(error) }, 'a result could not be read back for delivery; dropped');
      await this.remove(record.key);
      return;
    }
    try {
      await this.options.presenter.deliver({ id: record.jobId ?? record.key, reply }, payload, {
        announce: outcome.kind === 'result',
        viaChannel,
        // Discord's nonce is at most 25 characters: a job id (12) or a snowflake (≤ 20) with a prefix.
        nonce: `d${record.jobId ?? record.key}`,
      });
      await this.remove(record.key);
      log.info({ outcome: outcome.kind, attempts: record.attempts + 1, viaChannel }, 'job outcome delivered');
    } catch (error) {
      const transient = isTransientDiscordError(error);
      const attempts = record.attempts + 1;
      const expired = Date.now() - record.createdAt > this.options.keepFinishedMs;
      if ((!transient && viaChannel) || expired) {
        log.error({ err: loggableError(error), route, attempts }, 'job outcome could not be delivered; giving up');
        await this.remove(record.key);
        return;
      }
      // A final 4xx on the interaction route goes straight to the channel; anything else waits and tries again.
      const nextAttempts = transient ? attempts : Math.max(attempts, CHANNEL_FALLBACK_AFTER);
      const delay = transient ? backoffMs(attempts, retryAfterMs(error)) : 0;
      log.warn({ err: loggableError(error), route, attempts, retryInMs: Math.round(delay) }, 'job outcome not delivered yet; will retry');
      await this.save({ ...record, attempts: nextAttempts, nextAttemptAt: Date.now() + delay });
    }
  }

  private async payloadOf(record: DeliveryRecord, outcome: Outcome, job: JobRecord | undefined, reply: ReplyTarget): Promise<MessagePayload> {
    const { presenter } = this.options;
    switch (outcome.kind) {
      case 'failed':
        return presenter.failedPayload(record.jobId, outcome.reason);
      case 'cancelled':
        return presenter.cancelledPayload(record.jobId ?? record.key);
      case 'result': {
        if (!job) throw new Error(`job ${record.jobId ?? '?'} is no longer stored`);
        const images = await Promise.all(
          outcome.files.map(async (name, i) => ({
            png: await readFile(join(this.options.resultsDir, name)),
            nsfw: outcome.nsfw[i] ?? null,
            seed: outcome.seeds[i] ?? '',
          })),
        );
        return presenter.resultPayload(presentedJob(job, reply), {
          images,
          elapsedMs: outcome.elapsedMs,
          modelName: outcome.modelName,
          ...(outcome.promptTokens !== undefined ? { promptTokens: outcome.promptTokens } : {}),
        });
      }
    }
  }

  /** Deletes finished PNGs older than the retention, except those a pending delivery still needs. */
  async cleanup(): Promise<number> {
    const needed = new Set<string>();
    for (const record of this.records.values()) if (record.outcome?.kind === 'result') for (const name of record.outcome.files) needed.add(name);
    let removed = 0;
    let names: string[];
    try {
      names = await readdir(this.options.resultsDir);
    } catch {
      return 0;
    }
    const cutoff = Date.now() - this.options.keepFinishedMs;
    for (const name of names) {
      if (needed.has(name)) continue;
      const path = join(this.options.resultsDir, name);
      try {
        if ((await stat(path)).mtimeMs < cutoff) {
          await unlink(path);
          removed += 1;
        }
      } catch (error) {
        this.options.log.warn({ err: loggableError(error), file: path }, 'could not remove an old result');
      }
    }
    if (removed > 0) this.options.log.info({ removed, dir: this.options.resultsDir }, 'old results removed');
    return removed;
  }

  private startCleanup(): void {
    const run = () => void this.cleanup();
    run();
    this.cleanupTimer = setInterval(run, 60 * 60_000);
    this.cleanupTimer.unref();
  }

  /** Stores a record's new state (it is durable once this resolves). */
  private async save(record: DeliveryRecord): Promise<void> {
    this.records.set(record.key, record);
    await this.persist();
  }

  private async remove(key: string): Promise<void> {
    this.records.delete(key);
    await this.persist();
  }

  /**
   * Writes every pending record as one value, with group commit: a caller joins a write that has not started yet
   * (it will include the caller's change), else queues the next one. Requests acknowledged together, while the engine
   * holds the event loop between I/O callbacks, then share one or two writes instead of waiting for one each, which
   * is what keeps the acknowledgement within Discord's 3 seconds under load.
   */
  private persist(): Promise<void> {
    if (this.nextWrite) return this.nextWrite;
    const write = this.writeChain.then(async () => {
      this.nextWrite = null;
      await this.options.keyv.set(PENDING_KEY, [...this.records.values()]);
    });
    this.nextWrite = write;
    this.writeChain = write.catch(() => undefined);
    return write;
  }

  private logStoreError(error: unknown, jobId: string): void {
    this.options.log.warn({ err: loggableError(error), jobId }, 'could not update a pending delivery');
  }
}

/** The file of a job's image (1-based) in the results folder. */
function resultName(jobId: string, image: number): string {
  return `${jobId}-${image}.png`;
}

/** The key of a job's delivery record: the interaction that asked for it, as stored in the job's meta. */
export function deliveryKeyOf(job: JobRecord): string {
  const key = job.meta['interactionId'];
  return typeof key === 'string' ? key : job.id;
}

function withReplyId(reply: ReplyTarget, replyMessageId: string | undefined): ReplyTarget {
  return replyMessageId && !reply.replyMessageId ? { ...reply, replyMessageId } : reply;
}

/** Exponential backoff with jitter (half to full), at least what Discord asked for. */
export function backoffMs(attempts: number, retryAfter?: number): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempts - 1));
  const jittered = ceiling / 2 + Math.random() * (ceiling / 2);
  return Math.max(jittered, retryAfter ?? 0);
}
