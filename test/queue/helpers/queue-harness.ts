import { JobStore } from '../../../src/queue/job-store.js';
import { LocalJobQueue, type LocalJobQueueOptions } from '../../../src/queue/local-queue.js';
import type { Storage } from '../../../src/queue/storage.js';
import type { JobParams, JobQueueEventName, JobQueueEvents, JobRecord } from '../../../src/queue/types.js';
import type { StepGenerator } from './generator.js';

export function params(prompt: string, overrides: Partial<JobParams> = {}): JobParams {
  return {
    prompt,
    negative: '',
    seed: '42',
    steps: 3,
    cfg: 7.5,
    width: 512,
    height: 512,
    scheduler: 'euler',
    count: 1,
    rng: 'cpu',
    ...overrides,
  };
}

export function owner(guildId: string, userId: string, channelId = `${guildId}-general`) {
  return { guildId, userId, channelId };
}

export interface EventLogEntry {
  event: JobQueueEventName;
  prompt: string;
  position?: number;
}

export interface Harness {
  queue: LocalJobQueue;
  store: JobStore;
  /** Every event the queue emitted, in order. */
  log: EventLogEntry[];
  /** Prompts in the order their `started` event came. */
  startedOrder(): string[];
  /** Resolves with the first event of this kind whose job has this prompt. */
  waitFor<K extends JobQueueEventName>(event: K, prompt: string): Promise<JobQueueEvents[K]>;
}

/** A LocalJobQueue on the storage's `jobs` namespace, with every event recorded; not started. */
export function createQueue(storage: Storage, generator: StepGenerator, options: Pick<LocalJobQueueOptions, 'shutdownGraceMs'> = {}): Harness {
  const store = new JobStore(storage.namespace('jobs'));
  const queue = new LocalJobQueue({ store, generator, ...options });
  const log: EventLogEntry[] = [];
  const names: JobQueueEventName[] = ['queued', 'position', 'started', 'progress', 'finished', 'failed', 'cancelled'];
  for (const name of names) {
    queue.on(name, (payload) => {
      const entry: EventLogEntry = { event: name, prompt: (payload as { job: JobRecord }).job.params.prompt };
      if ('position' in payload && typeof payload.position === 'number') entry.position = payload.position;
      log.push(entry);
    });
  }
  return {
    queue,
    store,
    log,
    startedOrder: () => log.filter((e) => e.event === 'started').map((e) => e.prompt),
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
  };
}
