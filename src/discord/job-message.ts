/**
 * The one Discord message that shows a job's state, and how it is kept up to date without ever provoking a 429:
 *
 *  - Edits are coalesced: only the newest wanted state is kept, at most one request is in flight per job, and two
 *    edits are at least `minIntervalMs` apart. A state identical to the one on screen is not sent again.
 *  - All requests go through discord.js's REST manager, which queues per route bucket and waits when Discord's
 *    X-RateLimit headers say a bucket is empty.
 *  - The reply is edited through the interaction webhook (the token lives 15 minutes). When the token has expired,
 *    or is about to, the bot continues in a channel message of its own, posted as a reply that mentions the requester;
 *    the old reply is pointed at it when Discord still lets us.
 *
 * Everything needed to find the message again lives in `ReplyTarget`, which the caller persists with the job, so a
 * restarted bot updates the same message.
 */
import { DiscordAPIError, type REST, type RawFile } from 'discord.js';
import { MessageFlags, Routes, type APIActionRowComponent, type APIButtonComponent, type APIEmbed, type APIMessage } from 'discord-api-types/v10';
import type { Logger } from '../log.js';
import { messageLink } from './render.js';
import { isTransientDiscordError, loggableError } from './errors.js';

/** Interaction tokens are valid for 15 minutes after the interaction was created. */
export const INTERACTION_TOKEN_LIFETIME_MS = 15 * 60_000;
/** Stop using a token this long before it expires: a slow upload must not be cut off half-way. */
export const TOKEN_SAFETY_MARGIN_MS = 60_000;

export interface ReplyTarget {
  applicationId: string;
  interactionToken: string;
  /** When the interaction was created (ms since the epoch); its token lives 15 minutes from then. */
  interactionAt: number;
  guildId: string | null;
  channelId: string;
  requesterId: string;
  /** The interaction reply's message id, when known. */
  replyMessageId?: string;
  /** The bot's own channel message that took over once the token expired. */
  channelMessageId?: string;
  /** Set once the interaction token was found to be unusable. */
  tokenExpired?: boolean;
}

export interface MessagePayload {
  content: string;
  embeds?: APIEmbed[];
  components?: APIActionRowComponent<APIButtonComponent>[];
  /** Attachments that replace whatever the message had (none = remove all). */
  files?: RawFile[];
}

export interface JobMessageOptions {
  rest: REST;
  log: Logger;
  minIntervalMs: number;
  /** Called whenever the target changes (a channel message took over), so the caller can persist it. */
  onTargetChange?: (target: ReplyTarget) => void | Promise<void>;
  /** Injected for tests of the token rules; default Date.now. */
  now?: () => number;
}

/** Discord's answers that mean "this interaction token can no longer be used". */
function isDeadTokenError(error: unknown): boolean {
  if (!(error instanceof DiscordAPIError)) return false;
  // 50027 Invalid Webhook Token, 10015 Unknown Webhook, 10062 Unknown interaction, 10008 Unknown Message (reply gone).
  return [50027, 10015, 10062, 10008].includes(Number(error.code)) || error.status === 401;
}

function payloadKey(payload: MessagePayload): string {
  const files = (payload.files ?? []).map((file) => `${file.name}:${Buffer.byteLength(file.data as Buffer)}:${hashHead(file.data)}`);
  return JSON.stringify([payload.content, payload.embeds ?? [], payload.components ?? [], files]);
}

/** A cheap fingerprint of a file's bytes (previews of consecutive steps differ in many bytes). */
function hashHead(data: RawFile['data']): number {
  const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.isBuffer(data) ? data : data instanceof Uint8Array ? data : Buffer.from(String(data));
  let hash = 2166136261;
  const stride = Math.max(1, Math.floor(bytes.length / 512));
  for (let i = 0; i < bytes.length; i += stride) hash = Math.imul(hash ^ bytes[i]!, 16777619) >>> 0;
  return hash;
}

function toBody(payload: MessagePayload): Record<string, unknown> {
  return {
    content: payload.content,
    embeds: payload.embeds ?? [],
    components: payload.components ?? [],
    attachments: (payload.files ?? []).map((file, index) => ({ id: index, filename: file.name })),
    allowed_mentions: { parse: [] },
  };
}

export class JobMessage {
  private target: ReplyTarget;
  private readonly rest: REST;
  private readonly log: Logger;
  private readonly minIntervalMs: number;
  private readonly onTargetChange: JobMessageOptions['onTargetChange'];
  private readonly now: () => number;

  private pending: { payload: MessagePayload; key: string } | null = null;
  private shownKey: string | null = null;
  private lastSentAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private closed = false;
  private readyGate: Promise<void>;

  constructor(target: ReplyTarget, options: JobMessageOptions, ready: Promise<void> = Promise.resolve()) {
    this.target = { ...target };
    this.rest = options.rest;
    this.log = options.log;
    this.minIntervalMs = options.minIntervalMs;
    this.onTargetChange = options.onTargetChange;
    this.now = options.now ?? Date.now;
    // Nothing may be edited before the interaction is acknowledged; a failed ack leaves nothing to edit.
    this.readyGate = ready.catch(() => {
      this.closed = true;
    });
  }

  get current(): ReplyTarget {
    return { ...this.target };
  }

  /** Wants `payload` on screen soon; replaces any earlier wanted state that has not been sent yet. */
  update(payload: MessagePayload): void {
    if (this.closed) return;
    const key = payloadKey(payload);
    if (key === this.shownKey && this.pending === null) return;
    this.pending = { payload, key };
    this.schedule();
  }

  /**
   * Sends the last state now (after any edit in flight) and stops accepting updates. With `announce`, a result that
   * cannot go through the interaction token is posted as a new channel message that mentions the requester.
   */
  async finish(payload: MessagePayload, options: { announce?: boolean } = {}): Promise<void> {
    try {
      await this.deliver(payload, options);
    } catch (error) {
      this.log.warn({ err: loggableError(error) }, 'could not show the final state of a job');
    }
  }

  /**
   * As `finish`, but a failure is thrown to the caller (the delivery outbox), which retries. With `viaChannel` the
   * interaction route is not tried again: the result goes to a channel message, unless the reply already shows it
   * (an edit that reached Discord although its answer was lost). `nonce` makes a repeated channel post (a crash after
   * the post, before the outbox marked it done) return the first message instead of posting twice.
   */
  async deliver(payload: MessagePayload, options: { announce?: boolean; viaChannel?: boolean; nonce?: string } = {}): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
    this.closed = true;
    await this.readyGate;
    await this.inFlight;
    if (options.viaChannel && !this.target.channelMessageId) {
      if (await this.replyAlreadyShows(payload)) return;
      await this.sendInChannel(payload, options.announce ?? false, options.nonce);
      return;
    }
    await this.send(payload, options.announce ?? false, options.nonce);
  }

  /** Whether the interaction reply already shows `payload` (same text, same file names); false when it cannot tell. */
  private async replyAlreadyShows(payload: MessagePayload): Promise<boolean> {
    if (!this.tokenUsable()) return false;
    try {
      const shown = (await this.rest.get(Routes.webhookMessage(this.target.applicationId, this.target.interactionToken, '@original'), { auth: false })) as APIMessage;
      const names = (payload.files ?? []).map((file) => file.name).join('\n');
      return shown.content === payload.content && shown.attachments.map((a) => a.filename).join('\n') === names;
    } catch (error) {
      this.log.debug({ err: loggableError(error) }, 'could not read the interaction reply back');
      return false;
    }
  }

  /** Waits until every wanted state has been sent, at the usual pace (tests, shutdown). */
  async flush(): Promise<void> {
    await this.readyGate;
    while (this.inFlight || this.timer) {
      if (this.inFlight) await this.inFlight;
      else await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Stops any scheduled edit (shutdown: the next process takes over from the persisted target). */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
    this.closed = true;
  }

  private schedule(): void {
    if (this.timer || this.inFlight || !this.pending) return;
    const delay = Math.max(0, this.lastSentAt + this.minIntervalMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.sendPending();
    }, delay);
    this.timer.unref?.();
  }

  private sendPending(): void {
    const wanted = this.pending;
    this.pending = null;
    if (!wanted || wanted.key === this.shownKey) return;
    this.inFlight = this.readyGate
      .then(() => (this.closed && !this.pending ? undefined : this.send(wanted.payload, false)))
      .then(
        () => {
          this.shownKey = wanted.key;
        },
        (error: unknown) => {
          this.log.warn({ err: loggableError(error), route: 'PATCH /webhooks/:application_id/:token/messages/@original' }, 'could not update a job message');
          // A reset connection or a 5xx is tried again at the usual pace, unless a newer state replaced it meanwhile.
          if (isTransientDiscordError(error) && !this.closed && this.pending === null) this.pending = wanted;
        },
      )
      .finally(() => {
        this.lastSentAt = this.now();
        this.inFlight = null;
        this.schedule();
      });
  }

  private tokenUsable(): boolean {
    if (this.target.tokenExpired) return false;
    return this.now() - this.target.interactionAt < INTERACTION_TOKEN_LIFETIME_MS - TOKEN_SAFETY_MARGIN_MS;
  }

  private async send(payload: MessagePayload, announce: boolean, nonce?: string): Promise<void> {
    if (this.tokenUsable()) {
      try {
        await this.rest.patch(Routes.webhookMessage(this.target.applicationId, this.target.interactionToken, '@original'), {
          body: toBody(payload),
          files: payload.files ?? [],
          auth: false,
        });
        return;
      } catch (error) {
        if (!isDeadTokenError(error)) throw error;
        this.log.info({ code: (error as DiscordAPIError).code }, 'interaction token no longer valid; continuing in a channel message');
        await this.retarget({ tokenExpired: true });
      }
    }
    await this.sendInChannel(payload, announce, nonce);
  }

  private async sendInChannel(payload: MessagePayload, announce: boolean, nonce?: string): Promise<void> {
    const { channelId, requesterId } = this.target;
    const mention = `<@${requesterId}> `;
    if (this.target.channelMessageId && !announce) {
      await this.rest.patch(Routes.channelMessage(channelId, this.target.channelMessageId), { body: toBody(payload), files: payload.files ?? [] });
      return;
    }
    // A new message, replying to the original reply when there is one, and notifying the requester.
    const replyTo = this.target.replyMessageId;
    const body = {
      ...toBody(payload),
      content: `${mention}${payload.content}`.slice(0, 2000),
      allowed_mentions: { users: [requesterId] },
      ...(replyTo ? { message_reference: { message_id: replyTo, channel_id: channelId, fail_if_not_exists: false } } : {}),
      ...(nonce ? { nonce, enforce_nonce: true } : {}),
    };
    const posted = (await this.rest.post(Routes.channelMessages(channelId), { body, files: payload.files ?? [] })) as APIMessage;
    const previous = this.target.channelMessageId;
    await this.retarget({ channelMessageId: posted.id });
    const link = messageLink(this.target.guildId, channelId, posted.id);
    // Point what the requester saw before at the new message: our own earlier channel message always, the
    // interaction reply if Discord still lets the bot edit it.
    const pointer = { content: `➡️ ${announce ? 'The result is here' : 'Continued here'}: ${link}`, embeds: [], components: [], attachments: [], allowed_mentions: { parse: [] } };
    for (const messageId of [previous, replyTo]) {
      if (!messageId) continue;
      try {
        await this.rest.patch(Routes.channelMessage(channelId, messageId), { body: pointer });
      } catch (error) {
        this.log.info({ err: loggableError(error), messageId, route: 'PATCH /channels/:channel_id/messages/:message_id' }, 'could not point the old reply at the new message');
      }
    }
  }

  private async retarget(change: Partial<ReplyTarget>): Promise<void> {
    this.target = { ...this.target, ...change };
    try {
      await this.onTargetChange?.(this.current);
    } catch (error) {
      this.log.warn({ err: loggableError(error) }, 'could not persist where a job message lives');
    }
  }
}

/** Ephemeral flag for payloads built by hand. */
export const EPHEMERAL = MessageFlags.Ephemeral;
