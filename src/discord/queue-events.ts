/**
 * Queue events → job messages: each event of a job this bot queued (its meta holds the reply target) is handed to
 * the JobPresenter, and the job's life is logged once, here, with its id. Events of jobs queued by something else
 * (e.g. a CLI) have no message to show.
 */
import type { Logger } from '../log.js';
import { schedulerDisplayName, type JobQueue, type JobRecord, type SchedulerName } from '../queue/index.js';
import { loggableError } from './errors.js';
import { originText } from './render.js';
import type { ReplyTarget } from './job-message.js';
import type { DeliveryOutbox } from './delivery.js';
import type { JobPresenter, PresentedJob } from './presenter.js';

/** Reads the reply target stored in a job's meta. */
export function replyTargetOf(job: JobRecord): ReplyTarget | undefined {
  const reply = job.meta['reply'];
  if (!reply || typeof reply !== 'object' || Array.isArray(reply)) return undefined;
  const r = reply as Record<string, unknown>;
  if (typeof r['applicationId'] !== 'string' || typeof r['interactionToken'] !== 'string' || typeof r['channelId'] !== 'string') return undefined;
  return reply as unknown as ReplyTarget;
}

export function samplerLabel(name: string, karras: boolean | undefined): string {
  try {
    return schedulerDisplayName(name as SchedulerName, { karras });
  } catch {
    return name;
  }
}

export function presentedJob(job: JobRecord, reply: ReplyTarget): PresentedJob {
  return {
    id: job.id,
    reply,
    prompt: job.params.prompt,
    negativePrompt: job.params.negative,
    steps: job.params.steps,
    cfg: job.params.cfg,
    width: job.params.width,
    height: job.params.height,
    samplerName: samplerLabel(job.params.scheduler, job.params.karras),
    channelNsfw: job.meta['channelNsfw'] === true,
    ...(job.parentId ? { origin: originText(job) } : {}),
  };
}

export interface QueueEventsOptions {
  queue: JobQueue;
  presenter: JobPresenter;
  /** Takes every job's outcome (result, failure, cancel) and delivers it, durably and once. */
  outbox: DeliveryOutbox;
  log: Logger;
  /** Keeps a message update counted as in flight, so a graceful stop waits for it. */
  track(work: Promise<unknown>): void;
}

/** Subscribes to every queue event; returns the functions that unsubscribe. */
export function subscribeQueueEvents({ queue, presenter, outbox, log, track }: QueueEventsOptions): Array<() => void> {
  const withTarget = (job: JobRecord, act: (reply: ReplyTarget) => unknown) => {
    const reply = replyTargetOf(job);
    if (!reply) return; // a job queued by something other than this bot (e.g. a CLI): nothing to show
    track(Promise.resolve(act(reply)).catch((error: unknown) => log.warn({ err: loggableError(error), jobId: job.id }, 'could not update a job message')));
  };
  return [
    queue.on('queued', ({ job, position, restored }) => {
      if (restored) log.info({ jobId: job.id, position, status: job.status }, 'job restored after a restart');
      outbox.queued(job);
      withTarget(job, (reply) => presenter.queued(presentedJob(job, reply), position));
    }),
    queue.on('position', ({ job, position }) => withTarget(job, (reply) => presenter.queued(presentedJob(job, reply), position))),
    queue.on('started', ({ job }) => {
      log.info({ jobId: job.id, guildId: job.owner.guildId, attempt: job.attempts }, 'job started');
      withTarget(job, (reply) => presenter.started(presentedJob(job, reply)));
    }),
    queue.on('progress', ({ job, progress }) =>
      withTarget(job, (reply) => {
        const latents = progress.latents;
        if (progress.loadingLoras) presenter.loadingLoras(presentedJob(job, reply), progress.loadingLoras);
        else presenter.progress(presentedJob(job, reply), progress.step, progress.totalSteps, latents?.data, latents?.shape);
      }),
    ),
    queue.on('finished', ({ job, images }) => {
      log.info({ jobId: job.id, ms: job.result?.durationMs, images: images.length }, 'job finished');
      withTarget(job, () => outbox.finished(job, images));
    }),
    queue.on('failed', ({ job, error }) => {
      log.warn({ jobId: job.id, code: error.code, reason: error.message }, 'job failed');
      withTarget(job, () => outbox.failed(job, error.message));
    }),
    queue.on('cancelled', ({ job, by }) => {
      log.info({ jobId: job.id, by }, 'job cancelled');
      withTarget(job, () => outbox.cancelled(job));
    }),
  ];
}
