/**
 * Shows each job's life in its Discord message: queued with its position, progress with a preview, the result with
 * attachments, embed and buttons, or why it failed. One JobMessage per job keeps edits coalesced and throttled.
 * Reacts to queue events only; it never drives the queue.
 */
import type { RawFile, REST } from 'discord.js';
import type { Logger } from '../log.js';
import { encodeBatchPreview, type PreviewOptions } from '../queue/index.js';
import { gridAttachment, prepareAttachments, policyApplies, type FinishedImage, type NsfwPolicy } from './attachments.js';
import { JobMessage, type MessagePayload, type ReplyTarget } from './job-message.js';
import {
  CANCELLED_CONTENT,
  failedContent,
  finishedButtons,
  finishedContent,
  pendingButtons,
  loadingLorasContent,
  progressContent,
  queuedContent,
  resultEmbed,
  STARTING_CONTENT,
} from './render.js';
import { loggableError } from './errors.js';

/** What the presenter needs to know about a job; the queue adapter fills it from the job store. */
export interface PresentedJob {
  id: string;
  reply: ReplyTarget;
  prompt: string;
  negativePrompt: string;
  steps: number;
  cfg: number;
  width: number;
  height: number;
  samplerName: string;
  channelNsfw: boolean;
  /** Where the job comes from, for jobs made with a button (render.ts originText). */
  origin?: string;
}

export interface PresentedResult {
  images: FinishedImage[];
  elapsedMs: number;
  modelName: string;
  /** "92/150 tokens", when the engine reported it. */
  promptTokens?: string;
}

export interface PreviewSettings {
  enabled: boolean;
  minIntervalMs: number;
  format: 'webp' | 'jpeg';
  size: number;
}

export interface SafetyPolicy {
  nsfwPolicy: NsfwPolicy;
  checkInNsfwChannels: boolean;
}

export interface PresenterOptions {
  rest: REST;
  log: Logger;
  preview: PreviewSettings;
  /** The guild's current safety policy (settings can change while a job waits). */
  safetyPolicy: (guildId: string | null) => Promise<SafetyPolicy>;
  /** Persists a job's reply target when it moves to a channel message. */
  saveReplyTarget: (jobId: string, target: ReplyTarget) => Promise<void>;
  /**
   * Encodes a job's batch preview from its latents; default the colour map (encodeBatchPreview). The bot passes a
   * LatentPreviewRenderer's, which decodes through TAESD when `model.previewDecoder` names one.
   */
  encodePreview?: (latents: Float32Array, shape: readonly [number, number, number, number], options: PreviewOptions) => Promise<Buffer>;
}

interface Live {
  message: JobMessage;
  /** The latest progress line and preview image, combined into every progress edit. */
  content?: string;
  preview?: RawFile;
  startedAt?: number;
  lastPreviewAt: number;
  encodingPreview: boolean;
}

export class JobPresenter {
  private readonly live = new Map<string, Live>();

  constructor(private readonly options: PresenterOptions) {}

  /**
   * Registers a job's message. `ready` resolves once the interaction is acknowledged (for a job just submitted);
   * jobs restored after a restart pass nothing.
   */
  attach(job: Pick<PresentedJob, 'id' | 'reply'>, ready?: Promise<void>): JobMessage {
    const existing = this.live.get(job.id);
    if (existing) return existing.message;
    const message = new JobMessage(
      job.reply,
      {
        rest: this.options.rest,
        log: this.options.log.child({ jobId: job.id }),
        minIntervalMs: this.options.preview.minIntervalMs,
        onTargetChange: (target) => this.options.saveReplyTarget(job.id, target),
      },
      ready,
    );
    this.live.set(job.id, { message, lastPreviewAt: 0, encodingPreview: false });
    return message;
  }

  has(jobId: string): boolean {
    return this.live.has(jobId);
  }

  queued(job: PresentedJob, position: number, total?: number): void {
    const live = this.ensure(job);
    // Position 0 is the job the worker is taking right now.
    const content = position <= 0 ? STARTING_CONTENT : queuedContent(position, { total });
    live.message.update({ content, components: pendingButtons(job.id) });
  }

  started(job: PresentedJob): void {
    const live = this.ensure(job);
    live.startedAt = Date.now();
    live.message.update({ content: STARTING_CONTENT, components: pendingButtons(job.id) });
  }

  /** The engine is merging the job's LoRAs into the model before its first step (a set it has not kept open). */
  loadingLoras(job: PresentedJob, names: readonly string[]): void {
    const live = this.ensure(job);
    live.content = loadingLorasContent(names);
    this.showProgress(job.id, live);
  }

  /**
   * Called on every denoising step. The progress line is refreshed at the message's own pace; a preview is encoded
   * only when it could go out, and the latest one rides along with every later edit so a newer progress line never
   * drops it.
   */
  progress(job: PresentedJob, step: number, totalSteps: number, latents?: Float32Array, shape?: readonly [number, number, number, number]): void {
    const live = this.ensure(job);
    const startedAt = live.startedAt ?? (live.startedAt = Date.now());
    live.content = progressContent({ step, totalSteps, stepsPerImage: job.steps, elapsedMs: Date.now() - startedAt });
    this.showProgress(job.id, live);
    const { preview } = this.options;
    const now = Date.now();
    const previewDue = preview.enabled && !live.encodingPreview && now - live.lastPreviewAt >= preview.minIntervalMs && step < totalSteps;
    if (!previewDue || !latents || !shape) return;
    live.encodingPreview = true;
    live.lastPreviewAt = now;
    // The latents are only valid during the callback: encode from a copy. A job's images are one batch: show them all.
    const copy = latents.slice(0, shape[0] * shape[1] * shape[2] * shape[3]);
    const encode = this.options.encodePreview ?? encodeBatchPreview;
    encode(copy, shape, { size: preview.size, format: preview.format })
      .then((image) => {
        live.preview = { name: `preview.${preview.format === 'jpeg' ? 'jpg' : 'webp'}`, data: image };
        this.showProgress(job.id, live);
      })
      .catch((error: unknown) => this.options.log.warn({ err: loggableError(error), jobId: job.id }, 'preview encoding failed'))
      .finally(() => {
        live.encodingPreview = false;
      });
  }

  private showProgress(jobId: string, live: Live): void {
    live.message.update({ content: live.content ?? STARTING_CONTENT, components: pendingButtons(jobId), files: live.preview ? [live.preview] : [] });
  }

  /** The finished job's message: the PNGs under the guild's safety policy, the embed and the buttons. */
  async resultPayload(job: PresentedJob, result: PresentedResult): Promise<MessagePayload> {
    const policy = await this.options.safetyPolicy(job.reply.guildId);
    const prepared = await prepareAttachments(result.images, {
      policy: policy.nsfwPolicy,
      applies: policyApplies(job.channelNsfw, policy.checkInNsfwChannels),
      jobId: job.id,
    });
    const embed = resultEmbed({
      prompt: job.prompt,
      negative: job.negativePrompt,
      seeds: result.images.map((image) => image.seed),
      steps: job.steps,
      cfg: job.cfg,
      sampler: job.samplerName,
      width: job.width,
      height: job.height,
      model: result.modelName,
      promptTokens: result.promptTokens,
      elapsedMs: result.elapsedMs,
      requesterId: job.reply.requesterId,
      ...(job.origin ? { origin: job.origin } : {}),
      withheld: prepared.withheld,
      flagged: prepared.flagged,
    });
    // Several images: the grid first (Discord shows it large), then the originals with their parameters.
    const grid = await gridAttachment(prepared, { jobId: job.id, width: job.width, height: job.height });
    return {
      content: finishedContent(job.reply.requesterId),
      embeds: [embed],
      components: finishedButtons(job.id, { images: result.images.length }),
      files: grid ? [grid, ...prepared.files] : prepared.files,
    };
  }

  /** A job that failed; `jobId` undefined when no job exists to retry (e.g. its request was never queued). */
  failedPayload(jobId: string | undefined, reason: string): MessagePayload {
    return { content: failedContent(reason), components: jobId ? finishedButtons(jobId) : [] };
  }

  cancelledPayload(jobId: string): MessagePayload {
    return { content: CANCELLED_CONTENT, components: finishedButtons(jobId) };
  }

  /**
   * Shows a job's final state once the edits in flight are done, and forgets the job's live state. Throws when
   * Discord did not take it: the delivery outbox (delivery.ts) retries.
   */
  async deliver(job: Pick<PresentedJob, 'id' | 'reply'>, payload: MessagePayload, options: { announce: boolean; viaChannel: boolean; nonce: string }): Promise<void> {
    const live = this.ensure(job);
    try {
      await live.message.deliver(payload, options);
    } finally {
      this.live.delete(job.id);
    }
  }

  /** Stops every scheduled edit without sending more (shutdown). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.live.values()].map((live) => live.message.flush().catch(() => undefined)));
    for (const live of this.live.values()) live.message.dispose();
    this.live.clear();
  }

  private ensure(job: Pick<PresentedJob, 'id' | 'reply'>): Live {
    const live = this.live.get(job.id);
    if (live) return live;
    this.attach(job);
    return this.live.get(job.id)!;
  }
}
