import { PermissionFlagsBits } from 'discord-api-types/v10';
import type { ParsedBody } from './bodies.js';
import type { CommandStore } from './commands.js';
import {
  DiscordHttpError,
  emptyMessage,
  missingAccess,
  missingPermissions,
  unknownApplication,
  unknownChannel,
  unknownGuild,
  unknownMember,
  unknownMessage,
  unknownUser,
} from './errors.js';
import type { Gateway } from './gateway.js';
import type { InteractionManager } from './interactions.js';
import type { MessageStore, StoredMessage } from './messages.js';
import { apiChannel, apiGuild, apiMember, apiRole, apiUser, type EmulatorState } from './state.js';
import { isEmptyMessage, isObject, validateMessageBody, type Json, type JsonObject } from './validation.js';

export interface RestContext {
  params: Record<string, string>;
  query: URLSearchParams;
  body: ParsedBody;
}

export type RestResult = { status: 200 | 201; json: unknown } | { status: 204 };

export interface RestRoute {
  method: string;
  template: string;
  /** `bot`: needs `Authorization: Bot <token>`; `none`: interaction callbacks and interaction webhooks (token in path). */
  auth: 'bot' | 'none';
  handler: (ctx: RestContext) => RestResult;
}

export interface RestDependencies {
  state: EmulatorState;
  messages: MessageStore;
  commands: CommandStore;
  interactions: InteractionManager;
  gateway: Gateway;
  gatewayUrl: () => string;
  recommendedShards: () => number;
}

const ok = (json: unknown): RestResult => ({ status: 200, json });
const noContent = (): RestResult => ({ status: 204 });
const jsonBody = (ctx: RestContext): JsonObject => ctx.body.json ?? {};

/** Every Discord v10 route the emulator serves to the bot (paths are relative to `/api/v10`). */
export function buildRestRoutes(deps: RestDependencies): RestRoute[] {
  const { state, messages, commands, interactions } = deps;

  const requireApplication = (applicationId: string) => {
    if (applicationId !== state.applicationId) throw unknownApplication();
  };
  const requireGuild = (guildId: string) => {
    const guild = state.guilds.get(guildId);
    if (!guild) throw unknownGuild();
    return guild;
  };
  const requireChannel = (channelId: string) => {
    const channel = state.channels.get(channelId);
    if (!channel) throw unknownChannel();
    if ((state.channelPermissions(channelId, state.botUser.id) & PermissionFlagsBits.ViewChannel) === 0n) throw missingAccess();
    return channel;
  };
  const channelMessage = (channelId: string, messageId: string): StoredMessage => {
    const message = messages.get(messageId);
    if (!message || message.channelId !== channelId || message.ephemeral) throw unknownMessage();
    return message;
  };
  const commandsBody = (ctx: RestContext): Json => {
    const json = ctx.body.json;
    return json && Array.isArray(json.__array) ? json.__array : (json ?? {});
  };

  const routes: RestRoute[] = [
    // Gateway discovery
    { method: 'GET', template: '/gateway', auth: 'none', handler: () => ok({ url: deps.gatewayUrl() }) },
    {
      method: 'GET',
      template: '/gateway/bot',
      auth: 'bot',
      handler: () => ok({ url: deps.gatewayUrl(), shards: deps.recommendedShards(), session_start_limit: deps.gateway.sessionStartLimit.view() }),
    },

    // Users and the application
    { method: 'GET', template: '/users/@me', auth: 'bot', handler: () => ok({ ...apiUser(state.botUser), verified: true, mfa_enabled: false, locale: 'en-US' }) },
    {
      method: 'GET',
      template: '/users/@me/guilds',
      auth: 'bot',
      handler: () => ok([...state.guilds.values()].map((g) => ({ id: g.id, name: g.name, icon: null, banner: null, owner: false, permissions: state.basePermissions(g.id, state.botUser.id).toString(), features: [] }))),
    },
    {
      method: 'GET',
      template: '/users/:user_id',
      auth: 'bot',
      handler: ({ params }) => {
        const user = state.users.get(params.user_id ?? '');
        if (!user) throw unknownUser();
        return ok(apiUser(user));
      },
    },
    { method: 'GET', template: '/applications/@me', auth: 'bot', handler: () => ok(applicationObject(state)) },
    { method: 'GET', template: '/oauth2/applications/@me', auth: 'bot', handler: () => ok(applicationObject(state)) },

    // Application commands, global
    {
      method: 'GET',
      template: '/applications/:application_id/commands',
      auth: 'bot',
      handler: ({ params }) => (requireApplication(params.application_id ?? ''), ok(commands.list(null))),
    },
    {
      method: 'PUT',
      template: '/applications/:application_id/commands',
      auth: 'bot',
      handler: (ctx) => (requireApplication(ctx.params.application_id ?? ''), ok(commands.bulkOverwrite(null, commandsBody(ctx)))),
    },
    {
      method: 'POST',
      template: '/applications/:application_id/commands',
      auth: 'bot',
      handler: (ctx) => {
        requireApplication(ctx.params.application_id ?? '');
        const { command, created } = commands.create(null, commandsBody(ctx));
        return { status: created ? 201 : 200, json: command };
      },
    },
    {
      method: 'GET',
      template: '/applications/:application_id/commands/:command_id',
      auth: 'bot',
      handler: ({ params }) => (requireApplication(params.application_id ?? ''), ok(commands.get(params.command_id ?? '', null))),
    },
    {
      method: 'PATCH',
      template: '/applications/:application_id/commands/:command_id',
      auth: 'bot',
      handler: (ctx) => (requireApplication(ctx.params.application_id ?? ''), ok(commands.patch(ctx.params.command_id ?? '', null, commandsBody(ctx)))),
    },
    {
      method: 'DELETE',
      template: '/applications/:application_id/commands/:command_id',
      auth: 'bot',
      handler: ({ params }) => (requireApplication(params.application_id ?? ''), commands.delete(params.command_id ?? '', null), noContent()),
    },

    // Application commands, per guild
    {
      method: 'GET',
      template: '/applications/:application_id/guilds/:guild_id/commands',
      auth: 'bot',
      handler: ({ params }) => (requireApplication(params.application_id ?? ''), requireGuild(params.guild_id ?? ''), ok(commands.list(params.guild_id ?? ''))),
    },
    {
      method: 'PUT',
      template: '/applications/:application_id/guilds/:guild_id/commands',
      auth: 'bot',
      handler: (ctx) => {
        requireApplication(ctx.params.application_id ?? '');
        requireGuild(ctx.params.guild_id ?? '');
        return ok(commands.bulkOverwrite(ctx.params.guild_id ?? '', commandsBody(ctx)));
      },
    },
    {
      method: 'POST',
      template: '/applications/:application_id/guilds/:guild_id/commands',
      auth: 'bot',
      handler: (ctx) => {
        requireApplication(ctx.params.application_id ?? '');
        requireGuild(ctx.params.guild_id ?? '');
        const { command, created } = commands.create(ctx.params.guild_id ?? '', commandsBody(ctx));
        return { status: created ? 201 : 200, json: command };
      },
    },
    {
      method: 'GET',
      template: '/applications/:application_id/guilds/:guild_id/commands/permissions',
      auth: 'bot',
      handler: ({ params }) => (requireApplication(params.application_id ?? ''), requireGuild(params.guild_id ?? ''), ok([])),
    },
    {
      method: 'GET',
      template: '/applications/:application_id/guilds/:guild_id/commands/:command_id',
      auth: 'bot',
      handler: ({ params }) => (requireApplication(params.application_id ?? ''), ok(commands.get(params.command_id ?? '', params.guild_id ?? ''))),
    },
    {
      method: 'PATCH',
      template: '/applications/:application_id/guilds/:guild_id/commands/:command_id',
      auth: 'bot',
      handler: (ctx) => (requireApplication(ctx.params.application_id ?? ''), ok(commands.patch(ctx.params.command_id ?? '', ctx.params.guild_id ?? '', commandsBody(ctx)))),
    },
    {
      method: 'DELETE',
      template: '/applications/:application_id/guilds/:guild_id/commands/:command_id',
      auth: 'bot',
      handler: ({ params }) => (requireApplication(params.application_id ?? ''), commands.delete(params.command_id ?? '', params.guild_id ?? ''), noContent()),
    },

    // Interactions
    {
      method: 'POST',
      template: '/interactions/:interaction_id/:token/callback',
      auth: 'none',
      handler: (ctx) => {
        const result = interactions.callback(ctx.params.interaction_id ?? '', ctx.params.token ?? '', ctx.body.json, ctx.body.files, ctx.query.get('with_response') === 'true');
        return result ? ok(result) : noContent();
      },
    },
    {
      method: 'POST',
      template: '/webhooks/:application_id/:token',
      auth: 'none',
      handler: (ctx) => {
        const record = interactions.webhookInteraction(ctx.params.application_id ?? '', ctx.params.token ?? '');
        const message = interactions.followUp(record, jsonBody(ctx), ctx.body.files);
        return ctx.query.get('wait') === 'true' ? ok(messages.apiMessage(message, true)) : noContent();
      },
    },
    {
      method: 'GET',
      template: '/webhooks/:application_id/:token/messages/:message_id',
      auth: 'none',
      handler: ({ params }) => {
        const record = interactions.webhookInteraction(params.application_id ?? '', params.token ?? '');
        return ok(messages.apiMessage(interactions.webhookMessage(record, params.message_id ?? ''), true));
      },
    },
    {
      method: 'PATCH',
      template: '/webhooks/:application_id/:token/messages/:message_id',
      auth: 'none',
      handler: (ctx) => {
        const record = interactions.webhookInteraction(ctx.params.application_id ?? '', ctx.params.token ?? '');
        const message = interactions.editWebhookMessage(record, ctx.params.message_id ?? '', jsonBody(ctx), ctx.body.files);
        return ok(messages.apiMessage(message, true));
      },
    },
    {
      method: 'DELETE',
      template: '/webhooks/:application_id/:token/messages/:message_id',
      auth: 'none',
      handler: ({ params }) => {
        const record = interactions.webhookInteraction(params.application_id ?? '', params.token ?? '');
        interactions.deleteWebhookMessage(record, params.message_id ?? '');
        return noContent();
      },
    },

    // Channels and their messages
    { method: 'GET', template: '/channels/:channel_id', auth: 'bot', handler: ({ params }) => ok(apiChannel(requireChannel(params.channel_id ?? ''))) },
    {
      method: 'GET',
      template: '/channels/:channel_id/messages',
      auth: 'bot',
      handler: ({ params, query }) => {
        const channel = requireChannel(params.channel_id ?? '');
        if ((state.channelPermissions(channel.id, state.botUser.id) & PermissionFlagsBits.ReadMessageHistory) === 0n) return ok([]);
        const limit = Math.min(100, Math.max(1, Number(query.get('limit') ?? 50) || 50));
        let list = messages.channelHistory(channel.id);
        const before = query.get('before');
        const after = query.get('after');
        const around = query.get('around');
        if (before) list = list.filter((m) => BigInt(m.id) < BigInt(before));
        if (after) list = list.filter((m) => BigInt(m.id) > BigInt(after)).slice(0, limit);
        if (around) {
          const index = list.findIndex((m) => m.id === around);
          const start = Math.max(0, (index < 0 ? list.length : index) - Math.floor(limit / 2));
          list = list.slice(start, start + limit);
        }
        // Discord returns the newest first.
        return ok(list.slice(-limit).reverse().map((m) => messages.apiMessage(m, false)));
      },
    },
    {
      method: 'GET',
      template: '/channels/:channel_id/messages/:message_id',
      auth: 'bot',
      handler: ({ params }) => {
        requireChannel(params.channel_id ?? '');
        return ok(messages.apiMessage(channelMessage(params.channel_id ?? '', params.message_id ?? ''), false));
      },
    },
    {
      method: 'POST',
      template: '/channels/:channel_id/messages',
      auth: 'bot',
      handler: (ctx) => {
        const channel = requireChannel(ctx.params.channel_id ?? '');
        const permissions = state.channelPermissions(channel.id, state.botUser.id);
        if ((permissions & PermissionFlagsBits.SendMessages) === 0n) throw missingPermissions();
        if (ctx.body.files.length > 0 && (permissions & PermissionFlagsBits.AttachFiles) === 0n) throw missingPermissions();
        const body = jsonBody(ctx);
        validateMessageBody(body, { allowEphemeral: false, isEdit: false, uploadedFileCount: ctx.body.files.length }).throwIfAny();
        if (isEmptyMessage(body, ctx.body.files.length)) throw emptyMessage();
        const { flags, ...rest } = body;
        const nonce = typeof body.nonce === 'string' || typeof body.nonce === 'number' ? String(body.nonce) : null;
        if (nonce !== null && body.enforce_nonce === true) {
          const earlier = messages.byNonce(channel.id, state.botUser.id, nonce);
          if (earlier) return ok(messages.apiMessage(earlier, true));
        }
        // EPHEMERAL means nothing outside interactions; Discord drops it.
        const cleaned: JsonObject = typeof flags === 'number' ? { ...rest, flags: flags & ~64 } : rest;
        const message = messages.create({ channelId: channel.id, authorId: state.botUser.id, type: isObject(body.message_reference) ? 19 : 0, body: cleaned, files: ctx.body.files, ephemeral: false });
        if (nonce !== null) messages.rememberNonce(message, nonce);
        interactions.announceCreate(message);
        interactions.notify();
        return ok(messages.apiMessage(message, true));
      },
    },
    {
      method: 'PATCH',
      template: '/channels/:channel_id/messages/:message_id',
      auth: 'bot',
      handler: (ctx) => {
        requireChannel(ctx.params.channel_id ?? '');
        const message = channelMessage(ctx.params.channel_id ?? '', ctx.params.message_id ?? '');
        if (message.authorId !== state.botUser.id) throw new DiscordHttpError(403, 50005, 'Cannot edit a message authored by another user');
        const body = jsonBody(ctx);
        validateMessageBody(body, { allowEphemeral: false, isEdit: true, uploadedFileCount: ctx.body.files.length }).throwIfAny();
        messages.edit(message, body, ctx.body.files);
        interactions.announceUpdate(message);
        interactions.notify();
        return ok(messages.apiMessage(message, true));
      },
    },
    {
      method: 'DELETE',
      template: '/channels/:channel_id/messages/:message_id',
      auth: 'bot',
      handler: ({ params }) => {
        const channel = requireChannel(params.channel_id ?? '');
        const message = channelMessage(channel.id, params.message_id ?? '');
        if (message.authorId !== state.botUser.id && (state.channelPermissions(channel.id, state.botUser.id) & PermissionFlagsBits.ManageMessages) === 0n) throw missingPermissions();
        messages.delete(message);
        interactions.announceDelete(message);
        interactions.notify();
        return noContent();
      },
    },
    { method: 'POST', template: '/channels/:channel_id/typing', auth: 'bot', handler: ({ params }) => (requireChannel(params.channel_id ?? ''), noContent()) },

    // Guilds, members, roles
    {
      method: 'GET',
      template: '/guilds/:guild_id',
      auth: 'bot',
      handler: ({ params }) => ok(apiGuild(state, requireGuild(params.guild_id ?? ''))),
    },
    { method: 'GET', template: '/guilds/:guild_id/channels', auth: 'bot', handler: ({ params }) => ok(requireGuild(params.guild_id ?? '').channels.map(apiChannel)) },
    { method: 'GET', template: '/guilds/:guild_id/roles', auth: 'bot', handler: ({ params }) => ok(requireGuild(params.guild_id ?? '').roles.map(apiRole)) },
    {
      method: 'GET',
      template: '/guilds/:guild_id/members',
      auth: 'bot',
      handler: ({ params, query }) => {
        const guild = requireGuild(params.guild_id ?? '');
        const limit = Math.min(1000, Math.max(1, Number(query.get('limit') ?? 1) || 1));
        const after = query.get('after') ?? '0';
        const sorted = [...guild.members].sort((a, b) => (BigInt(a.userId) < BigInt(b.userId) ? -1 : 1));
        return ok(sorted.filter((m) => BigInt(m.userId) > BigInt(after)).slice(0, limit).map((m) => apiMember(state, m)));
      },
    },
    {
      method: 'GET',
      template: '/guilds/:guild_id/members/:user_id',
      auth: 'bot',
      handler: ({ params }) => {
        requireGuild(params.guild_id ?? '');
        const member = state.member(params.guild_id ?? '', params.user_id === '@me' ? state.botUser.id : (params.user_id ?? ''));
        if (!member) throw unknownMember();
        return ok(apiMember(state, member));
      },
    },
  ];
  return routes;
}

function applicationObject(state: EmulatorState): Record<string, unknown> {
  // Never `install_params: null`: discord.js 14 dereferences it when present.
  return {
    id: state.applicationId,
    name: state.applicationName,
    icon: null,
    description: '',
    summary: '',
    type: null,
    bot_public: true,
    bot_require_code_grant: false,
    verify_key: state.verifyKey,
    flags: 0,
    team: null,
    owner: undefined,
    bot: apiUser(state.botUser),
    guild_id: undefined,
    rpc_origins: [],
    tags: [],
    integration_types_config: { '0': {} },
    approximate_guild_count: state.guilds.size,
    redirect_uris: [],
    interactions_endpoint_url: null,
  };
}
