import { InteractionResponseType, InteractionType } from 'discord-api-types/v10';
import { randomBytes } from 'node:crypto';
import type { UploadedFile } from './bodies.js';
import { resolveAutocomplete, resolveInvocation, type CommandStore, type InvokeRequest } from './commands.js';
import {
  DiscordHttpError,
  FormErrors,
  SandboxRequestError,
  alreadyAcknowledged,
  emptyMessage,
  invalidWebhookToken,
  unknownInteraction,
  unknownMessage,
  unknownWebhook,
} from './errors.js';
import type { Gateway } from './gateway.js';
import { INTENT } from './gateway.js';
import type { MessageStore, StoredMessage } from './messages.js';
import type { SnowflakeGenerator } from './snowflake.js';
import { apiChannel, apiMember, apiUser, type EmulatorState } from './state.js';
import { MESSAGE_FLAG, isEmptyMessage, isObject, validateMessageBody, type Json, type JsonObject } from './validation.js';

export const INTERACTION_TYPE = {
  Ping: InteractionType.Ping,
  ApplicationCommand: InteractionType.ApplicationCommand,
  MessageComponent: InteractionType.MessageComponent,
  Autocomplete: InteractionType.ApplicationCommandAutocomplete,
  ModalSubmit: InteractionType.ModalSubmit,
} as const;
export const CALLBACK_TYPE = {
  Pong: InteractionResponseType.Pong,
  ChannelMessageWithSource: InteractionResponseType.ChannelMessageWithSource,
  DeferredChannelMessageWithSource: InteractionResponseType.DeferredChannelMessageWithSource,
  DeferredMessageUpdate: InteractionResponseType.DeferredMessageUpdate,
  UpdateMessage: InteractionResponseType.UpdateMessage,
  AutocompleteResult: InteractionResponseType.ApplicationCommandAutocompleteResult,
  Modal: InteractionResponseType.Modal,
  LaunchActivity: InteractionResponseType.LaunchActivity,
} as const;
/** Which initial responses Discord accepts for each interaction type. */
const ALLOWED_CALLBACKS: Record<number, number[]> = {
  [INTERACTION_TYPE.ApplicationCommand]: [4, 5, 9, 12],
  [INTERACTION_TYPE.MessageComponent]: [4, 5, 6, 7, 9],
  [INTERACTION_TYPE.ModalSubmit]: [4, 5, 6, 7],
  [INTERACTION_TYPE.Autocomplete]: [8],
};

export interface InteractionRecord {
  id: string;
  token: string;
  type: number;
  userId: string;
  guildId: string;
  channelId: string;
  createdAt: number;
  ackType: number | null;
  ackAt: number | null;
  /** The original response (for component interactions acked with 6/7: the message the component is on). */
  originalMessageId: string | null;
  /** For component interactions: the message that was clicked. */
  sourceMessageId: string | null;
  followupIds: string[];
  /** Whether the original response is ephemeral. */
  ephemeral: boolean;
  name: string | null;
  customId: string | null;
  modal: JsonObject | null;
  /** The choices an autocomplete interaction was answered with (callback type 8). */
  choices: JsonObject[] | null;
  payload: JsonObject;
  delivered: number;
}

export interface ClickRequest {
  user_id: string;
  message_id: string;
  custom_id: string;
  /** For select menus: the chosen values. */
  values?: string[];
}

export interface InteractionTimings {
  ackDeadlineMs: number;
  tokenLifetimeMs: number;
  attachmentSizeLimit: number;
}

/** The interaction state machine: creation from the control API, Discord's deadlines, callbacks and webhooks. */
export class InteractionManager {
  readonly records = new Map<string, InteractionRecord>();
  private readonly byToken = new Map<string, InteractionRecord>();
  /** Attachments uploaded through the control API for attachment options. */
  readonly optionUploads = new Map<string, JsonObject>();
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly state: EmulatorState,
    private readonly ids: SnowflakeGenerator,
    private readonly now: () => number,
    private readonly messages: MessageStore,
    private readonly commands: CommandStore,
    private readonly gateway: Gateway,
    private readonly timings: InteractionTimings,
  ) {}

  /** Called after any change, so waiters and the page's event stream can react. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(): void {
    for (const listener of this.listeners) listener();
  }

  // -------------------------------------------------------------------------------------------------------------
  // Creating interactions (the human side)

  invokeCommand(request: InvokeRequest): InteractionRecord {
    for (const key of ['user_id', 'guild_id', 'channel_id', 'name'] as const) {
      if (typeof request[key] !== 'string' || request[key].length === 0) throw new SandboxRequestError(`${key} is required`);
    }
    const { data } = resolveInvocation(this.state, this.commands, request, this.optionUploads);
    return this.create(INTERACTION_TYPE.ApplicationCommand, request.user_id, request.guild_id, request.channel_id, data, null, { name: request.name });
  }

  /** A user typing into an option with autocomplete; the bot answers with callback type 8 (choices). */
  autocomplete(request: InvokeRequest & { focused: string }): InteractionRecord {
    for (const key of ['user_id', 'guild_id', 'channel_id', 'name', 'focused'] as const) {
      if (typeof request[key] !== 'string' || request[key].length === 0) throw new SandboxRequestError(`${key} is required`);
    }
    const data = resolveAutocomplete(this.state, this.commands, request);
    return this.create(INTERACTION_TYPE.Autocomplete, request.user_id, request.guild_id, request.channel_id, data, null, { name: request.name });
  }

  click(request: ClickRequest): InteractionRecord {
    for (const key of ['user_id', 'message_id', 'custom_id'] as const) {
      if (typeof request[key] !== 'string' || request[key].length === 0) throw new SandboxRequestError(`${key} is required`);
    }
    const message = this.messages.get(request.message_id);
    if (!message) throw new SandboxRequestError(`no message ${request.message_id}`, 404);
    if (message.ephemeral && message.visibleToUserId !== request.user_id) throw new SandboxRequestError('that ephemeral message is only visible to another user');
    if (!message.guildId || !this.state.member(message.guildId, request.user_id)) throw new SandboxRequestError(`user ${request.user_id} is not a member of the message's guild`);
    if ((message.flags & MESSAGE_FLAG.Loading) !== 0) throw new SandboxRequestError('the message is still loading and has no components yet');
    const component = findComponent(message.components, request.custom_id);
    if (!component) throw new SandboxRequestError(`message ${message.id} has no component with custom_id "${request.custom_id}"`);
    if (component.disabled === true) throw new SandboxRequestError(`the component "${request.custom_id}" is disabled`);
    const data: JsonObject = { custom_id: request.custom_id, component_type: component.type as number };
    if (component.type !== 2) {
      const values = request.values ?? [];
      const min = typeof component.min_values === 'number' ? component.min_values : 1;
      const max = typeof component.max_values === 'number' ? component.max_values : 1;
      if (values.length < min || values.length > max) throw new SandboxRequestError(`select "${request.custom_id}" needs between ${min} and ${max} values`);
      if (component.type === 3 && Array.isArray(component.options)) {
        for (const value of values) if (!component.options.some((o) => isObject(o) && o.value === value)) throw new SandboxRequestError(`"${value}" is not an option of "${request.custom_id}"`);
      }
      data.values = values;
    }
    return this.create(INTERACTION_TYPE.MessageComponent, request.user_id, message.guildId, message.channelId, data, message, { customId: request.custom_id });
  }

  /** Submits the modal a bot opened in response to an interaction (callback type 9). */
  submitModal(interactionId: string, userId: string, values: Record<string, string>): InteractionRecord {
    const origin = this.records.get(interactionId);
    if (!origin?.modal) throw new SandboxRequestError('that interaction did not open a modal');
    if (origin.userId !== userId) throw new SandboxRequestError('only the user who opened the modal can submit it');
    const rows = Array.isArray(origin.modal.components) ? origin.modal.components : [];
    const components = rows.filter(isObject).map((row) => ({
      type: 1,
      components: (Array.isArray(row.components) ? row.components : []).filter(isObject).map((input) => ({ type: 4, custom_id: input.custom_id as string, value: values[String(input.custom_id)] ?? '' })),
    }));
    const source = origin.sourceMessageId ? (this.messages.get(origin.sourceMessageId) ?? null) : null;
    return this.create(INTERACTION_TYPE.ModalSubmit, userId, origin.guildId, origin.channelId, { custom_id: origin.modal.custom_id as string, components }, source, { customId: String(origin.modal.custom_id) });
  }

  private create(type: number, userId: string, guildId: string, channelId: string, data: JsonObject, source: StoredMessage | null, names: { name?: string; customId?: string }): InteractionRecord {
    const user = this.state.users.get(userId);
    const member = this.state.member(guildId, userId);
    const channel = this.state.channels.get(channelId);
    if (!user || !member || !channel) throw new SandboxRequestError('unknown user, guild or channel');
    const id = this.ids.next();
    // Discord's interaction tokens are long opaque strings starting with base64("interaction:").
    const token = `aW50ZXJhY3Rpb246${Buffer.from(id).toString('base64url')}${randomBytes(48).toString('base64url')}`;
    const payload: JsonObject = {
      id,
      application_id: this.state.applicationId,
      type,
      token,
      version: 1,
      guild_id: guildId,
      guild: { id: guildId, locale: 'en-US', features: [] },
      channel_id: channelId,
      channel: { ...apiChannel(channel), permissions: this.state.channelPermissions(channelId, userId).toString() } as JsonObject,
      member: { ...apiMember(this.state, member), permissions: this.state.channelPermissions(channelId, userId).toString() } as JsonObject,
      app_permissions: this.state.channelPermissions(channelId, this.state.botUser.id).toString(),
      locale: 'en-US',
      guild_locale: 'en-US',
      entitlements: [],
      authorizing_integration_owners: { '0': guildId },
      context: 0,
      attachment_size_limit: this.timings.attachmentSizeLimit,
      data,
    };
    if (source) payload.message = this.messages.apiMessage(source, false);
    const record: InteractionRecord = {
      id,
      token,
      type,
      userId,
      guildId,
      channelId,
      createdAt: this.now(),
      ackType: null,
      ackAt: null,
      originalMessageId: null,
      sourceMessageId: source?.id ?? null,
      followupIds: [],
      ephemeral: false,
      name: names.name ?? null,
      customId: names.customId ?? null,
      modal: null,
      choices: null,
      payload,
      delivered: 0,
    };
    this.records.set(id, record);
    this.byToken.set(token, record);
    record.delivered = this.gateway.dispatch('INTERACTION_CREATE', payload);
    this.notify();
    return record;
  }

  // -------------------------------------------------------------------------------------------------------------
  // The bot side: callbacks and interaction webhooks

  callback(interactionId: string, token: string, body: JsonObject | null, files: UploadedFile[], withResponse: boolean): JsonObject | null {
    const record = this.records.get(interactionId);
    if (!record || record.token !== token) throw unknownInteraction();
    const age = this.now() - record.createdAt;
    if (age > this.timings.tokenLifetimeMs) throw unknownInteraction();
    if (record.ackType !== null) throw alreadyAcknowledged();
    if (age > this.timings.ackDeadlineMs) throw unknownInteraction();

    const errors = new FormErrors();
    if (!body) {
      errors.add(['type'], 'BASE_TYPE_REQUIRED', 'This field is required');
      errors.throwIfAny();
    }
    const input = body as JsonObject;
    const allowed = ALLOWED_CALLBACKS[record.type] ?? [];
    if (typeof input.type !== 'number' || !allowed.includes(input.type)) {
      errors.add(['type'], 'BASE_TYPE_CHOICES', `Value must be one of {${allowed.join(', ')}}.`);
      errors.throwIfAny();
    }
    const callbackType = input.type as number;
    const data = isObject(input.data) ? input.data : {};
    if (input.data !== undefined && input.data !== null && !isObject(input.data)) {
      errors.add(['data'], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
      errors.throwIfAny();
    }
    const metadata = this.interactionMetadata(record);
    let resultMessage: StoredMessage | null = null;

    switch (callbackType) {
      case CALLBACK_TYPE.ChannelMessageWithSource: {
        validateMessageBody(data, { allowEphemeral: true, isEdit: false, uploadedFileCount: files.length }, errors, ['data']);
        errors.throwIfAny();
        if (isEmptyMessage(data, files.length)) throw emptyMessage();
        resultMessage = this.postAsInteraction(record, metadata, { type: responseType(record), body: data, files, ephemeral: isEphemeral(data.flags) });
        record.originalMessageId = resultMessage.id;
        record.ephemeral = resultMessage.ephemeral;
        break;
      }
      case CALLBACK_TYPE.DeferredChannelMessageWithSource: {
        if (data.flags !== undefined && data.flags !== null && (typeof data.flags !== 'number' || !Number.isInteger(data.flags))) {
          errors.add(['data', 'flags'], 'NUMBER_TYPE_COERCE', `Value "${JSON.stringify(data.flags)}" is not int.`);
          errors.throwIfAny();
        }
        // The "is thinking…" placeholder: empty, flagged LOADING until the first edit.
        resultMessage = this.postAsInteraction(record, metadata, {
          type: responseType(record),
          body: { content: '' },
          files: [],
          ephemeral: isEphemeral(data.flags),
          extraFlags: MESSAGE_FLAG.Loading,
        });
        record.originalMessageId = resultMessage.id;
        record.ephemeral = resultMessage.ephemeral;
        break;
      }
      case CALLBACK_TYPE.DeferredMessageUpdate: {
        resultMessage = record.sourceMessageId ? (this.messages.get(record.sourceMessageId) ?? null) : null;
        record.originalMessageId = record.sourceMessageId;
        record.ephemeral = resultMessage?.ephemeral ?? false;
        break;
      }
      case CALLBACK_TYPE.UpdateMessage: {
        validateMessageBody(data, { allowEphemeral: false, isEdit: true, uploadedFileCount: files.length }, errors, ['data']);
        errors.throwIfAny();
        const source = record.sourceMessageId ? this.messages.get(record.sourceMessageId) : undefined;
        if (!source) throw unknownMessage();
        resultMessage = this.messages.edit(source, data, files);
        record.originalMessageId = source.id;
        record.ephemeral = source.ephemeral;
        this.announceUpdate(source);
        break;
      }
      case CALLBACK_TYPE.Modal: {
        if (typeof data.custom_id !== 'string' || data.custom_id.length === 0 || data.custom_id.length > 100) errors.add(['data', 'custom_id'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
        if (typeof data.title !== 'string' || data.title.length === 0 || data.title.length > 45) errors.add(['data', 'title'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 45 in length.');
        if (!Array.isArray(data.components) || data.components.length === 0 || data.components.length > 5) errors.add(['data', 'components'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 5 in length.');
        errors.throwIfAny();
        record.modal = data;
        break;
      }
      case CALLBACK_TYPE.AutocompleteResult: {
        const choices = data.choices;
        if (!Array.isArray(choices) || choices.length > 25) {
          errors.add(['data', 'choices'], 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
        } else {
          choices.forEach((choice, index) => {
            if (!isObject(choice)) return errors.add(['data', 'choices', index], 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
            if (typeof choice.name !== 'string' || choice.name.length === 0 || choice.name.length > 100) errors.add(['data', 'choices', index, 'name'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
            if (typeof choice.value !== 'string' && typeof choice.value !== 'number') errors.add(['data', 'choices', index, 'value'], 'BASE_TYPE_REQUIRED', 'This field is required');
            else if (typeof choice.value === 'string' && choice.value.length > 100) errors.add(['data', 'choices', index, 'value'], 'BASE_TYPE_MAX_LENGTH', 'Must be 100 or fewer in length.');
          });
        }
        errors.throwIfAny();
        record.choices = (choices as Json[]).filter(isObject);
        break;
      }
      default: {
        errors.add(['type'], 'BASE_TYPE_CHOICES', `Value must be one of {${allowed.join(', ')}}.`);
        errors.throwIfAny();
      }
    }
    record.ackType = callbackType;
    record.ackAt = this.now();
    this.notify();
    if (!withResponse) return null;
    const response: JsonObject = { interaction: { id: record.id, type: record.type } as JsonObject, resource: { type: callbackType } as JsonObject };
    const interaction = response.interaction as JsonObject;
    if (resultMessage) {
      interaction.response_message_id = resultMessage.id;
      interaction.response_message_loading = (resultMessage.flags & MESSAGE_FLAG.Loading) !== 0;
      interaction.response_message_ephemeral = resultMessage.ephemeral;
      (response.resource as JsonObject).message = this.messages.apiMessage(resultMessage, true);
    }
    return response;
  }

  /** The interaction behind `/webhooks/{application_id}/{token}`, with Discord's checks. */
  webhookInteraction(applicationId: string, token: string): InteractionRecord {
    if (applicationId !== this.state.applicationId) throw unknownWebhook();
    const record = this.byToken.get(token);
    if (!record) throw invalidWebhookToken();
    if (this.now() - record.createdAt > this.timings.tokenLifetimeMs) throw invalidWebhookToken();
    // The interaction webhook only exists once the interaction has been acknowledged.
    if (record.ackType === null) throw unknownWebhook();
    return record;
  }

  /** `@original` or a follow-up id → the stored message, or 10008. */
  webhookMessage(record: InteractionRecord, messageId: string): StoredMessage {
    const id = messageId === '@original' ? record.originalMessageId : messageId;
    if (!id || (messageId !== '@original' && !record.followupIds.includes(id) && id !== record.originalMessageId)) throw unknownMessage();
    const message = this.messages.get(id);
    if (!message) throw unknownMessage();
    return message;
  }

  editWebhookMessage(record: InteractionRecord, messageId: string, body: JsonObject, files: UploadedFile[]): StoredMessage {
    const message = this.webhookMessage(record, messageId);
    const errors = validateMessageBody(body, { allowEphemeral: false, isEdit: true, uploadedFileCount: files.length });
    errors.throwIfAny();
    this.messages.edit(message, body, files);
    this.announceUpdate(message);
    this.notify();
    return message;
  }

  deleteWebhookMessage(record: InteractionRecord, messageId: string): void {
    const message = this.webhookMessage(record, messageId);
    this.messages.delete(message);
    this.announceDelete(message);
    this.notify();
  }

  /**
   * POST /webhooks/{app}/{token}: a follow-up. As on Discord, the first follow-up after a deferred response
   * (type 5) replaces the "thinking…" message instead of creating a new one, and inherits its ephemerality.
   */
  followUp(record: InteractionRecord, body: JsonObject, files: UploadedFile[]): StoredMessage {
    const errors = validateMessageBody(body, { allowEphemeral: true, isEdit: false, uploadedFileCount: files.length });
    errors.throwIfAny();
    if (isEmptyMessage(body, files.length)) throw emptyMessage();
    const original = record.originalMessageId ? this.messages.get(record.originalMessageId) : undefined;
    if (record.ackType === CALLBACK_TYPE.DeferredChannelMessageWithSource && original && (original.flags & MESSAGE_FLAG.Loading) !== 0) {
      const { flags: _ignored, ...rest } = body;
      this.messages.edit(original, rest, files);
      this.announceUpdate(original);
      this.notify();
      return original;
    }
    const metadata = this.interactionMetadata(record);
    if (record.originalMessageId) metadata.original_response_message_id = record.originalMessageId;
    const message = this.postAsInteraction(record, metadata, { type: 0, body, files, ephemeral: isEphemeral(body.flags) });
    record.followupIds.push(message.id);
    this.notify();
    return message;
  }

  /** A message the application posts through the interaction's webhook (response or follow-up), announced. */
  private postAsInteraction(
    record: InteractionRecord,
    metadata: JsonObject,
    init: { type: number; body: JsonObject; files: UploadedFile[]; ephemeral: boolean; extraFlags?: number },
  ): StoredMessage {
    const message = this.messages.create({
      ...init,
      channelId: record.channelId,
      authorId: this.state.botUser.id,
      webhookId: this.state.applicationId,
      visibleToUserId: record.userId,
      interactionId: record.id,
      interactionMetadata: metadata,
    });
    this.announceCreate(message);
    return message;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Gateway announcements for channel-visible messages

  announceCreate(message: StoredMessage): void {
    if (!message.ephemeral) this.gateway.dispatch('MESSAGE_CREATE', this.messages.apiMessage(message, true), INTENT.GuildMessages);
  }

  announceUpdate(message: StoredMessage): void {
    if (!message.ephemeral) this.gateway.dispatch('MESSAGE_UPDATE', this.messages.apiMessage(message, true), INTENT.GuildMessages);
  }

  announceDelete(message: StoredMessage): void {
    if (!message.ephemeral) this.gateway.dispatch('MESSAGE_DELETE', { id: message.id, channel_id: message.channelId, guild_id: message.guildId ?? undefined }, INTENT.GuildMessages);
  }

  private interactionMetadata(record: InteractionRecord): JsonObject {
    const user = this.state.users.get(record.userId);
    const metadata: JsonObject = {
      id: record.id,
      type: record.type,
      user: (user ? apiUser(user) : null) as Json,
      authorizing_integration_owners: { '0': record.guildId },
    };
    if (record.type === INTERACTION_TYPE.ApplicationCommand) {
      metadata.name = record.name ?? '';
      metadata.command_type = 1;
    }
    if (record.sourceMessageId) metadata.interacted_message_id = record.sourceMessageId;
    return JSON.parse(JSON.stringify(metadata)) as JsonObject;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Views for the control API

  /** `{acked, ack_type, ack_ms, ephemeral, original, followups}` plus a few extra fields useful in tests. */
  view(id: string): JsonObject | null {
    const record = this.records.get(id);
    if (!record) return null;
    const original = record.originalMessageId ? this.messages.get(record.originalMessageId) : undefined;
    const age = this.now() - record.createdAt;
    return {
      id: record.id,
      type: record.type,
      user_id: record.userId,
      guild_id: record.guildId,
      channel_id: record.channelId,
      name: record.name,
      custom_id: record.customId,
      created_at: new Date(record.createdAt).toISOString(),
      delivered: record.delivered > 0,
      acked: record.ackType !== null,
      ack_type: record.ackType,
      ack_ms: record.ackAt === null ? null : record.ackAt - record.createdAt,
      /** No initial response within the deadline: Discord's client shows "The application did not respond". */
      failed: record.ackType === null && age > this.timings.ackDeadlineMs,
      token_expired: age > this.timings.tokenLifetimeMs,
      ephemeral: record.ephemeral,
      modal: record.modal,
      choices: record.choices,
      original: original ? this.messages.sandboxMessage(original) : null,
      followups: record.followupIds.map((fid) => this.messages.get(fid)).filter((m): m is StoredMessage => m !== undefined).map((m) => this.messages.sandboxMessage(m)),
    };
  }
}

function findComponent(components: Json[], customId: string): JsonObject | null {
  for (const node of components) {
    if (!isObject(node)) continue;
    if (node.custom_id === customId) return node;
    for (const key of ['components', 'items'] as const) {
      const children = node[key];
      if (Array.isArray(children)) {
        const found = findComponent(children, customId);
        if (found) return found;
      }
    }
    if (isObject(node.accessory) && node.accessory.custom_id === customId) return node.accessory;
  }
  return null;
}

export { DiscordHttpError };

/** Whether message flags ask for an ephemeral message. */
function isEphemeral(flags: unknown): boolean {
  return typeof flags === 'number' && (flags & MESSAGE_FLAG.Ephemeral) !== 0;
}

/** The message type of an interaction's response: 20 (chat input command) for commands, 0 for components. */
function responseType(record: InteractionRecord): number {
  return record.type === INTERACTION_TYPE.ApplicationCommand ? 20 : 0;
}
