/**
 * Promotes jobs from the fair waiting room into BullMQ, one at a time and only while a live worker is free to take
 * one (with continuous batching, while the live workers' job slots are not all taken: each worker's heartbeat says
 * how many jobs it would hold now, its running jobs plus one while it has free UNet rows; 1 for a worker without): so the fair order decides which job runs next at the last moment, as the local queue's dispatcher does, and
 * BullMQ's wait list never holds more than the idle workers will take. Bot and worker processes all run it (on
 * enqueue, on job end, on a tick); a Redis lock lets one at a time promote.
 *
 * A promotion is peek → add to BullMQ (job id = our job id, so adding twice is a no-op) → take-if-still-first: a
 * process that dies between the steps leaves the job in both places, and the next promotion finishes it.
 */
import { randomUUID } from 'node:crypto';
import { Queue, type RedisClient } from 'bullmq';
import type { Logger } from 'pino';
import type { WorkerInfo } from '../types.js';
import { Coalescer } from './coalesce.js';
import { releaseLock, setIfAbsent, type RedisFairStore } from './fair-store.js';
import { BULL_QUEUE_NAME, MARKER_TTL_MS, connectionFor, redisKeys, type RedisJobData, type RedisKeys, type WorkerHeartbeat } from './protocol.js';

export interface DispatcherOptions {
  client: RedisClient;
  queue: Queue<RedisJobData>;
  fair: RedisFairStore;
  keys: RedisKeys;
  /** A worker whose last heartbeat is older than this is gone. */
  goneAfterMs: number;
  logger?: Logger;
}

/** BullMQ job options of every promoted job: kept a week after the end so a bot restart can read the outcome. */
const JOB_OPTIONS = {
  removeOnComplete: { age: MARKER_TTL_MS / 1000 },
  removeOnFail: { age: MARKER_TTL_MS / 1000 },
  attempts: 1,
};

export class Dispatcher {
  private readonly rounds = new Coalescer(() => this.round());

  constructor(private readonly options: DispatcherOptions) {}

  /** Promotes what can be promoted now; concurrent calls in one process coalesce into one more round. */
  dispatch(): Promise<void> {
    return this.rounds.run();
  }

  private async round(): Promise<void> {
    const { client, queue, fair, keys } = this.options;
    const token = randomUUID();
    // Another process is promoting; its round (or the next tick anywhere) sees the same free workers.
    if (!(await setIfAbsent(client, keys.dispatchLock, token, 10_000))) return;
    try {
      for (;;) {
        const fleet = await readWorkers(client, keys, this.options.goneAfterMs);
        const live = fleet.filter((w) => w.state !== 'gone').reduce((slots, w) => slots + w.jobSlots, 0);
        // A worker that vanished mid-job leaves its job active until BullMQ's stalled check hands it back; that job
        // holds no live worker, so it must not keep a live one idle meanwhile.
        const active = new Set((await queue.getActive()).map((job) => job.id));
        const heldByGone = fleet.flatMap((w) => w.lastJobIds ?? []).filter((id) => active.has(id)).length;
        const counts = await queue.getJobCounts('wait', 'prioritized', 'paused');
        const taken = (counts.wait ?? 0) + (counts.prioritized ?? 0) + (counts.paused ?? 0) + active.size - heldByGone;
        if (taken >= live) return;
        const id = await fair.peek();
        if (id === undefined) return;
        const data = await fair.data(id);
        if (data) await queue.add('generate', data, { ...JOB_OPTIONS, jobId: id });
        if (!(await fair.take(id))) {
          this.options.logger?.warn({ jobId: id }, 'fair head changed during promotion (cancelled?); retrying');
          continue;
        }
        this.options.logger?.debug({ jobId: id, liveWorkers: live }, 'job promoted to the workers');
      }
    } finally {
      await releaseLock(client, keys.dispatchLock, token);
    }
  }
}

/**
 * A fleet entry with the jobs it would hold now (`jobSlots`, see WorkerHeartbeat) and, for a worker that vanished
 * (not closed) while busy, the jobs it had.
 */
type FleetEntry = WorkerInfo & { jobSlots: number; lastJobIds?: string[] };

/** The fleet from the heartbeat hash, newest first; a heartbeat older than `goneAfterMs` reads as gone. */
export async function readWorkers(client: RedisClient, keys: RedisKeys, goneAfterMs: number, now = Date.now()): Promise<FleetEntry[]> {
  const all = await client.hgetall(keys.workers);
  const workers: FleetEntry[] = [];
  for (const raw of Object.values(all)) {
    let beat: WorkerHeartbeat;
    try {
      beat = JSON.parse(raw) as WorkerHeartbeat;
    } catch {
      continue;
    }
    const gone = beat.closed === true || now - beat.lastHeartbeat > goneAfterMs;
    workers.push({
      id: beat.id,
      host: beat.host,
      pid: beat.pid,
      model: beat.model,
      provider: beat.provider,
      device: beat.device,
      state: gone ? 'gone' : beat.busy ? 'busy' : 'idle',
      ...(!gone && beat.busy && beat.jobId ? { jobId: beat.jobId } : {}),
      ...(gone && !beat.closed && beat.busy && beat.jobId ? { lastJobIds: beat.jobIds ?? [beat.jobId] } : {}),
      jobSlots: beat.jobSlots ?? 1,
      jobsDone: beat.jobsDone,
      lastHeartbeat: beat.lastHeartbeat,
    });
  }
  return workers.sort((a, b) => b.lastHeartbeat - a.lastHeartbeat);
}

/**
 * The fleet as seen from outside a bot or worker (`doctor`): connects, reads the heartbeats, disconnects. Fails
 * after `timeoutMs` instead of waiting for a Redis that does not answer.
 */
export async function fetchFleet(url: string, options: { prefix: string; goneAfterMs: number; timeoutMs?: number }): Promise<FleetEntry[]> {
  const keys = redisKeys(options.prefix);
  const queue = new Queue(BULL_QUEUE_NAME, { connection: { ...connectionFor(url), maxRetriesPerRequest: 1, connectTimeout: options.timeoutMs ?? 3000 }, prefix: keys.bullPrefix });
  queue.on('error', () => undefined);
  try {
    return await readWorkers(await queue.client, keys, options.goneAfterMs);
  } finally {
    await queue.close().catch(() => undefined);
  }
}
