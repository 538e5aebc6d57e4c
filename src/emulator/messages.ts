import type { UploadedFile } from './bodies.js';
import { DiscordHttpError, FormErrors, entityTooLarge } from './errors.js';
import { contentTypeFor, sniffImage } from './media.js';
import type { SnowflakeGenerator } from './snowflake.js';
import { apiMember, apiUser, type EmulatorState } from './state.js';
import { LIMITS, MESSAGE_FLAG, isObject, type Json, type JsonObject } from './validation.js';

export interface StoredAttachment {
  id: string;
  channelId: string;
  filename: string;
  contentType: string;
  size: number;
  width: number | null;
  height: number | null;
  description: string | null;
  title: string | null;
  ephemeral: boolean;
  data: Buffer;
}

/** One snapshot per create/edit, so tests can assert on progress edits (previews) after the fact. */
export interface MessageRevision {
  at: number;
  content: string;
  attachments: string[];
  flags: number;
}

export interface StoredMessage {
  id: string;
  channelId: string;
  guildId: string | null;
  authorId: string;
  /** Interaction responses are sent through the application's webhook: Discord sets webhook_id = application id. */
  webhookId: string | null;
  applicationId: string | null;
  type: number;
  content: string;
  embeds: JsonObject[];
  components: Json[];
  attachments: StoredAttachment[];
  flags: number;
  tts: boolean;
  createdAt: number;
  editedAt: number | null;
  editCount: number;
  /** Ephemeral messages are seen only by `visibleToUserId` and never appear in channel history or gateway events. */
  ephemeral: boolean;
  visibleToUserId: string | null;
  interactionId: string | null;
  interactionMetadata: JsonObject | null;
  deleted: boolean;
  history: MessageRevision[];
}

export interface MessageStoreOptions {
  cdnBase: () => string;
  maxAttachmentBytes: number;
}

/** How long a nonce makes a create with `enforce_nonce` return the earlier message (Discord: "a few minutes"). */
const NONCE_WINDOW_MS = 5 * 60_000;

/** Messages, their attachments (served back by the CDN route) and their edit history. */
export class MessageStore {
  readonly messages = new Map<string, StoredMessage>();
  readonly attachments = new Map<string, StoredAttachment>();
  private readonly nonces = new Map<string, { messageId: string; at: number }>();

  constructor(
    private readonly state: EmulatorState,
    private readonly ids: SnowflakeGenerator,
    private readonly now: () => number,
    private readonly options: MessageStoreOptions,
  ) {}

  get(id: string): StoredMessage | undefined {
    const message = this.messages.get(id);
    return message && !message.deleted ? message : undefined;
  }

  /** Non-ephemeral, non-deleted messages of a channel, oldest first. */
  /**
   * Discord's `enforce_nonce`: a message this author created in this channel with the same nonce within the last few
   * minutes (the emulator keeps 5), which a create with that nonce returns instead of making a second one.
   */
  byNonce(channelId: string, authorId: string, nonce: string): StoredMessage | undefined {
    const entry = this.nonces.get(`${channelId}:${authorId}:${nonce}`);
    if (!entry || this.now() - entry.at > NONCE_WINDOW_MS) return undefined;
    return this.messages.get(entry.messageId);
  }

  rememberNonce(message: StoredMessage, nonce: string): void {
    this.nonces.set(`${message.channelId}:${message.authorId}:${nonce}`, { messageId: message.id, at: this.now() });
  }

  channelHistory(channelId: string): StoredMessage[] {
    return [...this.messages.values()].filter((m) => m.channelId === channelId && !m.deleted && !m.ephemeral);
  }

  create(init: {
    channelId: string;
    authorId: string;
    webhookId?: string | null;
    type: number;
    body: JsonObject;
    files: UploadedFile[];
    ephemeral: boolean;
    visibleToUserId?: string | null;
    interactionId?: string | null;
    interactionMetadata?: JsonObject | null;
    extraFlags?: number;
  }): StoredMessage {
    const channel = this.state.channels.get(init.channelId);
    const message: StoredMessage = {
      id: this.ids.next(),
      channelId: init.channelId,
      guildId: channel?.guildId ?? null,
      authorId: init.authorId,
      webhookId: init.webhookId ?? null,
      applicationId: init.webhookId ? this.state.applicationId : null,
      type: init.type,
      content: '',
      embeds: [],
      components: [],
      attachments: [],
      flags: 0,
      tts: init.body.tts === true,
      createdAt: this.now(),
      editedAt: null,
      editCount: 0,
      ephemeral: init.ephemeral,
      visibleToUserId: init.ephemeral ? (init.visibleToUserId ?? null) : null,
      interactionId: init.interactionId ?? null,
      interactionMetadata: init.interactionMetadata ?? null,
      deleted: false,
      history: [],
    };
    this.applyBody(message, init.body, init.files, false);
    message.flags = settableFlags(init.body.flags) | (init.extraFlags ?? 0) | (init.ephemeral ? MESSAGE_FLAG.Ephemeral : 0);
    message.history.push(this.revision(message));
    this.messages.set(message.id, message);
    if (channel && !message.ephemeral) channel.lastMessageId = message.id;
    return message;
  }

  /** PATCH semantics: fields present replace, `attachments` lists what to keep, new files are added. */
  edit(message: StoredMessage, body: JsonObject, files: UploadedFile[]): StoredMessage {
    this.applyBody(message, body, files, true);
    if (body.flags !== undefined && body.flags !== null) {
      // Only SUPPRESS_EMBEDS can be toggled by an edit; the rest of the flags are kept.
      const keep = message.flags & ~MESSAGE_FLAG.SuppressEmbeds;
      message.flags = keep | ((body.flags as number) & MESSAGE_FLAG.SuppressEmbeds);
    }
    // An edit of a deferred ("thinking…") response turns it into the real response.
    message.flags &= ~MESSAGE_FLAG.Loading;
    message.editedAt = this.now();
    message.editCount += 1;
    message.history.push(this.revision(message));
    return message;
  }

  delete(message: StoredMessage): void {
    message.deleted = true;
  }

  private revision(message: StoredMessage): MessageRevision {
    return { at: message.editedAt ?? message.createdAt, content: message.content, attachments: message.attachments.map((a) => a.filename), flags: message.flags };
  }

  private applyBody(message: StoredMessage, body: JsonObject, files: UploadedFile[], isEdit: boolean): void {
    if (body.content !== undefined) message.content = typeof body.content === 'string' ? body.content : '';
    if (body.components !== undefined) message.components = numberComponents(Array.isArray(body.components) ? body.components : []);
    for (const file of files) if (file.data.length > this.options.maxAttachmentBytes) throw entityTooLarge();

    let attachments: StoredAttachment[];
    const descriptors = Array.isArray(body.attachments) ? body.attachments.filter(isObject) : null;
    const existingById = new Map(message.attachments.map((a) => [a.id, a]));
    const usedFiles = new Set<UploadedFile>();
    if (descriptors) {
      attachments = [];
      for (const descriptor of descriptors) {
        const id = String(descriptor.id);
        const kept = existingById.get(id);
        if (kept) {
          if (typeof descriptor.description === 'string') kept.description = descriptor.description;
          attachments.push(kept);
          continue;
        }
        const file = files.find((f) => f.index === id);
        if (!file) {
          if (isEdit || files.length > 0 || descriptors.length > 0) {
            const errors = new FormErrors();
            errors.add(['attachments', descriptors.indexOf(descriptor), 'id'], 'ATTACHMENT_NOT_FOUND', `Attachment data not found`);
            errors.throwIfAny();
          }
          continue;
        }
        usedFiles.add(file);
        attachments.push(this.storeAttachment(message, file, descriptor));
      }
      // Files the descriptors did not mention are still attached, as Discord does.
      for (const file of files) if (!usedFiles.has(file)) attachments.push(this.storeAttachment(message, file, {}));
    } else {
      attachments = [...(isEdit ? message.attachments : []), ...files.map((f) => this.storeAttachment(message, f, {}))];
    }
    if (attachments.length > LIMITS.attachments) {
      const errors = new FormErrors();
      errors.add(['attachments'], 'BASE_TYPE_MAX_LENGTH', `Must be ${LIMITS.attachments} or fewer in length.`);
      errors.throwIfAny();
    }
    message.attachments = attachments;
    if (body.embeds !== undefined) message.embeds = (Array.isArray(body.embeds) ? body.embeds.filter(isObject) : []).map((e) => this.normalizeEmbed(e, attachments));

    const empty = message.content.length === 0 && message.embeds.length === 0 && message.components.length === 0 && message.attachments.length === 0;
    if (empty && isEdit && (message.flags & MESSAGE_FLAG.Loading) === 0) {
      throw new DiscordHttpError(400, 50006, 'Cannot send an empty message');
    }
  }

  private storeAttachment(message: StoredMessage, file: UploadedFile, descriptor: JsonObject): StoredAttachment {
    const filename = typeof descriptor.filename === 'string' && descriptor.filename.length > 0 ? descriptor.filename : file.filename;
    const image = sniffImage(file.data);
    const attachment: StoredAttachment = {
      id: this.ids.next(),
      channelId: message.channelId,
      filename: filename.replace(/[^\w.-]/g, '_'),
      contentType: contentTypeFor(filename, file.data, file.contentType),
      size: file.data.length,
      width: image?.width ?? null,
      height: image?.height ?? null,
      description: typeof descriptor.description === 'string' ? descriptor.description : null,
      title: typeof descriptor.title === 'string' ? descriptor.title : null,
      ephemeral: message.ephemeral,
      data: file.data,
    };
    this.attachments.set(attachment.id, attachment);
    return attachment;
  }

  attachmentUrl(attachment: StoredAttachment): string {
    const folder = attachment.ephemeral ? 'ephemeral-attachments' : 'attachments';
    return `${this.options.cdnBase()}/${folder}/${attachment.channelId}/${attachment.id}/${encodeURIComponent(attachment.filename)}`;
  }

  private normalizeEmbed(embed: JsonObject, attachments: StoredAttachment[]): JsonObject {
    const copy = structuredClone(embed);
    copy.type ??= 'rich';
    // `attachment://name.png` points at a file of the same message; Discord rewrites it to the CDN url.
    for (const key of ['image', 'thumbnail'] as const) {
      const media = copy[key];
      if (!isObject(media) || typeof media.url !== 'string' || !media.url.startsWith('attachment://')) continue;
      const name = media.url.slice('attachment://'.length);
      const target = attachments.find((a) => a.filename === name);
      if (!target) continue;
      const url = this.attachmentUrl(target);
      copy[key] = { url, proxy_url: url, width: target.width ?? 0, height: target.height ?? 0, content_type: target.contentType };
    }
    return copy;
  }

  apiAttachment(attachment: StoredAttachment): JsonObject {
    const url = this.attachmentUrl(attachment);
    const result: JsonObject = { id: attachment.id, filename: attachment.filename, size: attachment.size, url, proxy_url: url, content_type: attachment.contentType };
    if (attachment.width !== null && attachment.height !== null) {
      result.width = attachment.width;
      result.height = attachment.height;
    }
    if (attachment.description !== null) result.description = attachment.description;
    if (attachment.title !== null) result.title = attachment.title;
    if (attachment.ephemeral) result.ephemeral = true;
    return result;
  }

  /** The APIMessage discord.js parses; `withGuildFields` adds guild_id and member as gateway events carry them. */
  apiMessage(message: StoredMessage, withGuildFields = false): JsonObject {
    const author = this.state.users.get(message.authorId);
    const result: Record<string, unknown> = {
      id: message.id,
      type: message.type,
      content: message.content,
      channel_id: message.channelId,
      author: author ? apiUser(author) : null,
      attachments: message.attachments.map((a) => this.apiAttachment(a)),
      embeds: message.embeds,
      mentions: [],
      mention_roles: [],
      mention_everyone: false,
      pinned: false,
      tts: message.tts,
      timestamp: new Date(message.createdAt).toISOString(),
      edited_timestamp: message.editedAt === null ? null : new Date(message.editedAt).toISOString(),
      flags: message.flags,
      components: message.components,
    };
    if (message.webhookId) result.webhook_id = message.webhookId;
    if (message.applicationId) result.application_id = message.applicationId;
    if (message.interactionMetadata) {
      result.interaction_metadata = message.interactionMetadata;
      const user = message.interactionMetadata.user;
      if (message.interactionMetadata.type === 2 && typeof message.interactionMetadata.name === 'string') {
        result.interaction = { id: message.interactionMetadata.id, type: 2, name: message.interactionMetadata.name, user };
      }
    }
    if (withGuildFields && message.guildId) {
      result.guild_id = message.guildId;
      const member = this.state.member(message.guildId, message.authorId);
      if (member && !message.webhookId) {
        const { user: _user, ...rest } = apiMember(this.state, member);
        result.member = rest;
      }
    }
    return JSON.parse(JSON.stringify(result)) as JsonObject;
  }

  /** The control API's flat message view (issue 3). */
  sandboxMessage(message: StoredMessage): JsonObject {
    return {
      id: message.id,
      channel_id: message.channelId,
      author_id: message.authorId,
      content: message.content,
      embeds: message.embeds,
      components: message.components,
      attachments: message.attachments.map((a) => ({
        id: a.id,
        filename: a.filename,
        content_type: a.contentType,
        size: a.size,
        width: a.width,
        height: a.height,
        url: this.attachmentUrl(a),
      })),
      flags: message.flags,
      ephemeral: message.ephemeral,
      loading: (message.flags & MESSAGE_FLAG.Loading) !== 0,
      interaction_id: message.interactionId,
      /** Who used which command (Discord shows "<user> used /<name>" above the response). */
      interaction_user_id: message.interactionMetadata && typeof message.interactionMetadata.user === 'object' && message.interactionMetadata.user !== null && !Array.isArray(message.interactionMetadata.user) ? (message.interactionMetadata.user.id ?? null) : null,
      interaction_name: typeof message.interactionMetadata?.name === 'string' ? message.interactionMetadata.name : null,
      edit_count: message.editCount,
      created_at: new Date(message.createdAt).toISOString(),
      edited_at: message.editedAt === null ? null : new Date(message.editedAt).toISOString(),
      history: message.history.map((h) => ({ at: new Date(h.at).toISOString(), content: h.content, attachments: h.attachments, flags: h.flags })),
    };
  }
}

function settableFlags(flags: Json | undefined): number {
  return typeof flags === 'number' ? flags & (MESSAGE_FLAG.SuppressEmbeds | MESSAGE_FLAG.SuppressNotifications | MESSAGE_FLAG.IsComponentsV2 | MESSAGE_FLAG.IsVoiceMessage) : 0;
}

/** Discord numbers every component of a message (the `id` field) when the sender did not. */
function numberComponents(components: Json[]): Json[] {
  const copy = structuredClone(components);
  let next = 1;
  const used = new Set<number>();
  const collect = (node: Json) => {
    if (Array.isArray(node)) node.forEach(collect);
    else if (isObject(node)) {
      if (typeof node.id === 'number') used.add(node.id);
      Object.values(node).forEach(collect);
    }
  };
  collect(copy);
  const assign = (node: Json) => {
    if (Array.isArray(node)) node.forEach(assign);
    else if (isObject(node)) {
      if (typeof node.type === 'number' && node.id === undefined) {
        while (used.has(next)) next += 1;
        node.id = next;
        used.add(next);
      }
      for (const key of ['components', 'accessory', 'items'] as const) if (node[key] !== undefined) assign(node[key] as Json);
    }
  };
  assign(copy);
  return copy;
}
