import type { Keyv } from 'keyv';
import type { Logger } from 'pino';
import { newJobId } from './ids.js';
import { KeyedSerializer } from './serial.js';
import type { EnqueueInput, JobLineage, JobRecord, JobStatus } from './types.js';

const INDEX_KEY = 'index:active';
/** The active index of one bot instance (a shard set) when several share the store; '' keeps the historical key. */
const indexKeyOf = (instance: string): string => (instance === '' ? INDEX_KEY : `${INDEX_KEY}:${instance}`);
const jobKey = (id: string): string => `job:${id}`;

/** The list of active (queued or running) job ids, in enqueue order, and the next sequence number. */
interface ActiveIndex {
  v: 1;
  nextSeq: number;
  ids: string[];
}

export interface JobStoreOptions {
  /** How long finished jobs stay readable (buttons on old messages read them). Default 30 days. */
  finishedTtlMs?: number;
  /**
   * Which bot instance this store indexes for, when several bot processes share one store (shards on one Redis):
   * each keeps its own active index (`index:active:<instance>`) and so stays its only writer, while job records
   * stay shared (any process reads any job: buttons, /imagine-queue). Default '' (one process: `index:active`).
   */
  instance?: string;
  logger?: Logger;
}

const STATUSES: readonly JobStatus[] = ['queued', 'running', 'done', 'failed', 'cancelled'];

/**
 * Jobs in keyv. keyv cannot list keys on every backend, so an index record holds the active ids. Crash safety
 * comes from write order: a new job's record is written before the index names it, and a finished job's final
 * record is written before the index drops it. A crash between the two leaves either an unindexed record (a job
 * whose enqueue never returned, so nobody was told it was queued) or a dangling/finished id in the index, which
 * loading skips. Single writer per index: one process owns each index — the one LocalJobQueue, or each bot
 * instance (shard set) of the Redis backend its own (`instance`), so several bot processes never overwrite each
 * other's list. The jobs an index names are the ones its process delivers (`owns`).
 */
export class JobStore {
  private readonly keyv: Keyv;
  private readonly finishedTtlMs: number;
  private readonly logger: Logger | undefined;
  private readonly indexKey: string;
  private readonly serial = new KeyedSerializer();
  private index: ActiveIndex | undefined;

  constructor(keyv: Keyv, options: JobStoreOptions = {}) {
    this.keyv = keyv;
    this.finishedTtlMs = options.finishedTtlMs ?? 30 * 24 * 3600 * 1000;
    this.logger = options.logger;
    this.indexKey = indexKeyOf(options.instance ?? '');
  }

  /** Whether this store's index names the job: it was created (or restored) here and has not finished yet. */
  owns(id: string): boolean {
    return this.index?.ids.includes(id) ?? false;
  }

  /**
   * Reads the index and the active jobs it names, sorted by enqueue sequence. Dangling ids, unreadable records
   * and records that are no longer active are skipped (and dropped from the index).
   */
  async loadActive(): Promise<JobRecord[]> {
    return this.serial.run('index', async () => {
      const stored = await this.keyv.get<unknown>(this.indexKey);
      const index = parseIndex(stored);
      if (stored !== undefined && !index) this.logger?.warn('job index unreadable; starting with an empty queue');
      const jobs: JobRecord[] = [];
      let maxSeq = 0;
      for (const id of new Set(index?.ids ?? [])) {
        const record = await this.keyv.get<unknown>(jobKey(id));
        const job = parseJobRecord(record);
        if (!job) {
          this.logger?.warn({ jobId: id }, record === undefined ? 'indexed job missing; skipped' : 'indexed job unreadable; skipped');
          continue;
        }
        maxSeq = Math.max(maxSeq, job.seq);
        if (job.status === 'queued' || job.status === 'running') jobs.push(job);
      }
      jobs.sort((a, b) => a.seq - b.seq);
      this.index = { v: 1, nextSeq: Math.max(index?.nextSeq ?? 1, maxSeq + 1), ids: jobs.map((j) => j.id) };
      await this.keyv.set(this.indexKey, this.index);
      return jobs;
    });
  }

  /** Creates a queued job with a fresh id and the next sequence number; persisted before it returns. */
  async create(input: EnqueueInput, now: number): Promise<JobRecord> {
    return this.serial.run('index', async () => {
      const index = this.requireIndex();
      let id = newJobId();
      // 72 random bits make a clash absurdly unlikely; checking costs one read and rules it out.
      while (this.index?.ids.includes(id) || (await this.keyv.get(jobKey(id))) !== undefined) id = newJobId();
      const job: JobRecord = {
        v: 1,
        id,
        owner: { ...input.owner },
        params: { ...input.params },
        status: 'queued',
        seq: index.nextSeq,
        createdAt: now,
        attempts: 0,
        meta: { ...(input.meta ?? {}) },
        ...lineageOf(input),
      };
      await this.keyv.set(jobKey(id), job);
      const next: ActiveIndex = { v: 1, nextSeq: index.nextSeq + 1, ids: [...index.ids, id] };
      await this.keyv.set(this.indexKey, next);
      this.index = next;
      return job;
    });
  }

  /** Writes an active job's record (status running, attempts, …). */
  async save(job: JobRecord): Promise<void> {
    await this.serial.run(`job:${job.id}`, () => this.keyv.set(jobKey(job.id), job, isFinished(job) ? this.finishedTtlMs : undefined));
  }

  /** Writes a finished job's final record (with the finished-job TTL), then drops it from the index. */
  async finish(job: JobRecord): Promise<void> {
    await this.save(job);
    await this.serial.run('index', async () => {
      const index = this.requireIndex();
      if (!index.ids.includes(job.id)) return;
      const next: ActiveIndex = { ...index, ids: index.ids.filter((id) => id !== job.id) };
      await this.keyv.set(this.indexKey, next);
      this.index = next;
    });
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const record = await this.keyv.get<unknown>(jobKey(id));
    if (record === undefined) return undefined;
    const job = parseJobRecord(record);
    if (!job) this.logger?.warn({ jobId: id }, 'job record unreadable');
    return job;
  }

  /** Read-modify-write of one job's record, serialized per job. */
  async update(id: string, change: (job: JobRecord) => JobRecord): Promise<JobRecord | undefined> {
    return this.serial.run(`job:${id}`, async () => {
      const current = parseJobRecord(await this.keyv.get<unknown>(jobKey(id)));
      if (!current) return undefined;
      const next = change(current);
      await this.keyv.set(jobKey(id), next, isFinished(next) ? this.finishedTtlMs : undefined);
      return next;
    });
  }

  private requireIndex(): ActiveIndex {
    if (!this.index) throw new Error('JobStore.loadActive() must run before jobs are created or finished.');
    return this.index;
  }
}

/** The lineage fields that are set (a record without a parent keeps the shape it always had). */
export function lineageOf(source: JobLineage): JobLineage {
  return {
    ...(source.parentId !== undefined ? { parentId: source.parentId } : {}),
    ...(source.relation !== undefined ? { relation: source.relation } : {}),
    ...(source.parentImage !== undefined ? { parentImage: source.parentImage } : {}),
  };
}

function isFinished(job: JobRecord): boolean {
  return job.status === 'done' || job.status === 'failed' || job.status === 'cancelled';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseIndex(value: unknown): ActiveIndex | undefined {
  if (!isObject(value) || !Array.isArray(value.ids)) return undefined;
  const ids = value.ids.filter((id): id is string => typeof id === 'string');
  const nextSeq = typeof value.nextSeq === 'number' && Number.isSafeInteger(value.nextSeq) ? value.nextSeq : 1;
  return { v: 1, nextSeq, ids };
}

/** Checks the fields the queue relies on; anything else in the record is carried along untouched. */
export function parseJobRecord(value: unknown): JobRecord | undefined {
  if (!isObject(value)) return undefined;
  const { id, owner, params, status, seq } = value;
  if (typeof id !== 'string' || typeof seq !== 'number' || !STATUSES.includes(status as JobStatus)) return undefined;
  if (!isObject(owner) || typeof owner.userId !== 'string' || typeof owner.guildId !== 'string' || typeof owner.channelId !== 'string') return undefined;
  if (!isObject(params) || typeof params.prompt !== 'string' || typeof params.seed !== 'string') return undefined;
  const job = value as unknown as JobRecord;
  return { ...job, meta: isObject(job.meta) ? job.meta : {}, attempts: typeof job.attempts === 'number' ? job.attempts : 0 };
}
