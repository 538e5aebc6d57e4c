// The Redis backend's test fleet: real worker processes (redis-worker-child.ts) and a bot-side RedisJobQueue with
// every event recorded, on a real redis-server.
import { spawn, type ChildProcess } from 'node:child_process';
import { JobStore } from '../../../src/queue/job-store.js';
import { RedisJobQueue } from '../../../src/queue/redis/redis-queue.js';
import type { RedisTimings } from '../../../src/queue/redis/worker.js';
import type { Storage } from '../../../src/queue/storage.js';
import type { JobQueueEventName, JobQueueEvents, JobRecord } from '../../../src/queue/types.js';
import { captureLogs } from './log-capture.js';
import type { EventLogEntry } from './queue-harness.js';

/** Low timings so a killed worker is found in about two seconds and a gone worker in under one. */
export const FLEET_TIMINGS: Required<RedisTimings> = { heartbeatMs: 250, goneAfterMs: 1000, lockDurationMs: 1000, stalledIntervalMs: 500 };
export const PREFIX = 'itest';

export interface FleetWorker {
  pid: number;
  child: ChildProcess;
  /** SIGKILL, resolved once the process is gone. */
  kill(): Promise<void>;
}

/** Spawns a worker process (with continuous batching when `maxBatchRows` > 1) and resolves once it takes jobs. */
export function spawnWorker(url: string, stepMs: number, maxBatchRows = 1): Promise<FleetWorker> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/queue/helpers/redis-worker-child.ts', url, PREFIX, String(stepMs), String(maxBatchRows)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker never became ready: ${stderr}`)), 60_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      if (!chunk.toString().includes('READY')) return;
      clearTimeout(timer);
      resolve({
        pid: child.pid as number,
        child,
        kill: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null || child.signalCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGKILL');
          }),
      });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code} before it was ready: ${stderr}`));
    });
  });
}

export interface RedisHarness {
  queue: RedisJobQueue;
  log: EventLogEntry[];
  startedOrder(): string[];
  finishedOrder(): string[];
  /** Resolves with the first event of this kind whose job has this prompt. */
  waitFor<K extends JobQueueEventName>(event: K, prompt: string): Promise<JobQueueEvents[K]>;
  /** Resolves once `count` events of this kind were seen in all; rejects with the queue's log after `timeoutMs`. */
  waitForCount(event: JobQueueEventName, count: number, timeoutMs?: number): Promise<void>;
  /** The bot-side queue's log lines (pino JSON), for failure messages. */
  logs: Array<Record<string, unknown>>;
}

/**
 * A bot-side RedisJobQueue on the storage's `jobs` namespace with every event recorded; not started. `instance` names
 * one of several bot processes (a shard set), which keeps its own index of active jobs.
 */
export function createRedisQueue(storage: Storage, url: string, instance = ''): RedisHarness {
  const store = new JobStore(storage.namespace('jobs'), { instance });
  const { logger, lines } = captureLogs();
  const queue = new RedisJobQueue({ url, prefix: PREFIX, store, ...FLEET_TIMINGS, logger });
  const log: EventLogEntry[] = [];
  const names: JobQueueEventName[] = ['queued', 'position', 'started', 'progress', 'finished', 'failed', 'cancelled'];
  const waiters: Array<() => void> = [];
  for (const name of names) {
    queue.on(name, (payload) => {
      const entry: EventLogEntry = { event: name, prompt: (payload as { job: JobRecord }).job.params.prompt };
      if ('position' in payload && typeof payload.position === 'number') entry.position = payload.position;
      log.push(entry);
      for (const wake of [...waiters]) wake();
    });
  }
  const of = (event: JobQueueEventName) => log.filter((e) => e.event === event).map((e) => e.prompt);
  return {
    queue,
    log,
    startedOrder: () => of('started'),
    finishedOrder: () => of('finished'),
    waitFor(event, prompt) {
      return new Promise((resolve) => {
        const off = queue.on(event, (payload) => {
          if ((payload as { job: JobRecord }).job.params.prompt === prompt) {
            off();
            resolve(payload);
          }
        });
      });
    },
    logs: lines,
    waitForCount(event, count, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          remove();
          const seen = log.filter((e) => e.event === event).map((e) => e.prompt);
          const tail = lines.filter((l) => (l.level as number) >= 30).slice(-40).map((l) => JSON.stringify(l)).join('\n');
          reject(new Error(`saw ${seen.length}/${count} ${event} (${seen.join(' ')}); queue log:\n${tail}`));
        }, timeoutMs);
        const remove = () => {
          const at = waiters.indexOf(check);
          if (at >= 0) waiters.splice(at, 1);
        };
        const check = () => {
          if (log.filter((e) => e.event === event).length < count) return;
          clearTimeout(timer);
          remove();
          resolve();
        };
        waiters.push(check);
        check();
      });
    },
  };
}
