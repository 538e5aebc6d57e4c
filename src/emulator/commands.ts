import { PermissionFlagsBits } from 'discord-api-types/v10';
import { FormErrors, SandboxRequestError, tooManyCommands, unknownCommand } from './errors.js';
import type { SnowflakeGenerator } from './snowflake.js';
import { apiChannel, apiMember, apiRole, apiUser, type EmulatorState } from './state.js';
import { OPTION_TYPE, isObject, validateCommandBody, type Json, type JsonObject } from './validation.js';

/** Application commands as Discord stores them (global ones have no guild_id). */
export class CommandStore {
  private readonly commands = new Map<string, JsonObject>();

  constructor(
    private readonly state: EmulatorState,
    private readonly ids: SnowflakeGenerator,
  ) {}

  list(guildId: string | null): JsonObject[] {
    return [...this.commands.values()].filter((c) => (c.guild_id ?? null) === guildId);
  }

  all(): JsonObject[] {
    return [...this.commands.values()];
  }

  get(id: string, guildId: string | null): JsonObject {
    const command = this.commands.get(id);
    if (!command || (command.guild_id ?? null) !== guildId) throw unknownCommand();
    return command;
  }

  /** PUT: replaces the whole set; commands keep their id when name and type match, as on Discord. */
  bulkOverwrite(guildId: string | null, bodies: Json): JsonObject[] {
    const errors = new FormErrors();
    if (!Array.isArray(bodies)) {
      errors.add([], 'BASE_TYPE_LIST', 'Must be an array.');
      errors.throwIfAny();
      return [];
    }
    if (bodies.length > 100) throw tooManyCommands();
    bodies.forEach((body, index) => validateCommandBody(errors, [index], body));
    const seen = new Set<string>();
    bodies.forEach((body, index) => {
      if (!isObject(body)) return;
      const key = `${String(body.type ?? 1)}:${String(body.name)}`;
      if (seen.has(key)) errors.add([index, 'name'], 'APPLICATION_COMMANDS_DUPLICATE_NAME', 'Application command names must be unique');
      seen.add(key);
    });
    errors.throwIfAny();
    const previous = this.list(guildId);
    for (const old of previous) this.commands.delete(String(old.id));
    return bodies.filter(isObject).map((body) => {
      const existing = previous.find((c) => c.name === body.name && c.type === (body.type ?? 1));
      return this.store(guildId, body, existing);
    });
  }

  /** POST: creates, or overwrites the command with the same name and type. */
  create(guildId: string | null, body: Json): { command: JsonObject; created: boolean } {
    const errors = new FormErrors();
    validateCommandBody(errors, [], body);
    errors.throwIfAny();
    const input = body as JsonObject;
    const existing = this.list(guildId).find((c) => c.name === input.name && c.type === (input.type ?? 1));
    if (!existing && this.list(guildId).length >= 100) throw tooManyCommands();
    return { command: this.store(guildId, input, existing), created: !existing };
  }

  patch(id: string, guildId: string | null, body: Json): JsonObject {
    const current = this.get(id, guildId);
    const errors = new FormErrors();
    validateCommandBody(errors, [], isObject(body) ? { ...body, type: current.type ?? 1 } : body, true);
    errors.throwIfAny();
    const merged: JsonObject = { ...current, ...(body as JsonObject) };
    return this.store(guildId, merged, current);
  }

  delete(id: string, guildId: string | null): void {
    this.get(id, guildId);
    this.commands.delete(id);
  }

  private store(guildId: string | null, body: JsonObject, existing: JsonObject | undefined): JsonObject {
    const type = typeof body.type === 'number' ? body.type : 1;
    const command: JsonObject = {
      id: existing ? String(existing.id) : this.ids.next(),
      application_id: this.state.applicationId,
      version: this.ids.next(),
      default_member_permissions: typeof body.default_member_permissions === 'string' ? body.default_member_permissions : null,
      type,
      name: body.name as string,
      name_localizations: isObject(body.name_localizations) ? body.name_localizations : null,
      description: type === 1 ? (body.description as string) : '',
      description_localizations: isObject(body.description_localizations) ? body.description_localizations : null,
      dm_permission: body.dm_permission !== false,
      contexts: Array.isArray(body.contexts) ? body.contexts : null,
      integration_types: Array.isArray(body.integration_types) ? body.integration_types : [0],
      nsfw: body.nsfw === true,
    };
    if (guildId) command.guild_id = guildId;
    if (Array.isArray(body.options) && body.options.length > 0) command.options = body.options.filter(isObject).map(normalizeOption);
    this.commands.set(String(command.id), command);
    return command;
  }
}

function normalizeOption(option: JsonObject): JsonObject {
  const copy: JsonObject = { ...option };
  if (Array.isArray(option.options)) copy.options = option.options.filter(isObject).map(normalizeOption);
  if (copy.type !== OPTION_TYPE.Subcommand && copy.type !== OPTION_TYPE.SubcommandGroup) copy.required = option.required === true;
  return copy;
}

// ---------------------------------------------------------------------------------------------------------------
// Invoking a command the way Discord's client does

export interface InvokeRequest {
  user_id: string;
  guild_id: string;
  channel_id: string;
  name: string;
  /** `{prompt: "a cat", steps: 20}` or `[{name: "prompt", value: "a cat"}]`. */
  options?: Record<string, unknown> | { name: string; value: unknown }[];
  /** `"sub"` or `"group sub"`. */
  subcommand?: string;
  /** Lets a user without `default_member_permissions` invoke the command, to test that the bot re-checks. */
  bypass_permissions?: boolean;
}

export interface ResolvedInvocation {
  command: JsonObject;
  data: JsonObject;
}

/**
 * Builds an interaction's `data` from the registered command, refusing (with a reason) whatever Discord's client
 * would not send: unknown command, missing permission, NSFW command outside an NSFW channel, missing required
 * options, wrong types, values out of range, values not among the choices.
 */
export function resolveInvocation(state: EmulatorState, commands: CommandStore, request: InvokeRequest, uploads: Map<string, JsonObject>): ResolvedInvocation {
  const channel = state.channels.get(request.channel_id);
  if (!channel || channel.guildId !== request.guild_id) throw new SandboxRequestError(`channel ${request.channel_id} is not a channel of guild ${request.guild_id}`);
  if (!state.member(request.guild_id, request.user_id)) throw new SandboxRequestError(`user ${request.user_id} is not a member of guild ${request.guild_id}`);
  const chatInput = (c: JsonObject) => c.type === 1 && c.name === request.name;
  // A guild command shadows a global one of the same name in the client's picker.
  const command = commands.list(request.guild_id).find(chatInput) ?? commands.list(null).find(chatInput);
  if (!command) throw new SandboxRequestError(`no registered chat-input command named "${request.name}" (global or in this guild)`);

  const permissions = state.channelPermissions(request.channel_id, request.user_id);
  if ((permissions & PermissionFlagsBits.UseApplicationCommands) === 0n && !request.bypass_permissions) {
    throw new SandboxRequestError('the user lacks Use Application Commands in this channel');
  }
  if (typeof command.default_member_permissions === 'string' && !request.bypass_permissions) {
    const required = BigInt(command.default_member_permissions);
    const isAdministrator = (permissions & PermissionFlagsBits.Administrator) !== 0n;
    if (!isAdministrator && (required === 0n || (permissions & required) !== required)) {
      throw new SandboxRequestError(`the user lacks the permissions /${request.name} requires (default_member_permissions ${command.default_member_permissions}); Discord's client does not offer it to them`);
    }
  }
  if (command.nsfw === true && !channel.nsfw) throw new SandboxRequestError(`/${request.name} is age-restricted and can only be used in NSFW channels`);

  const given = normalizeGivenOptions(request.options);
  let level: Json[] = Array.isArray(command.options) ? command.options : [];
  const wrap: ((inner: JsonObject[]) => JsonObject[])[] = [];
  const path = (request.subcommand ?? '').trim().split(/\s+/).filter(Boolean);
  const hasSubcommands = level.some((o) => isObject(o) && (o.type === OPTION_TYPE.Subcommand || o.type === OPTION_TYPE.SubcommandGroup));
  if (hasSubcommands && path.length === 0) throw new SandboxRequestError(`/${request.name} needs a subcommand`);
  if (!hasSubcommands && path.length > 0) throw new SandboxRequestError(`/${request.name} has no subcommands`);
  for (const part of path) {
    const sub = level.find((o): o is JsonObject => isObject(o) && o.name === part && (o.type === OPTION_TYPE.Subcommand || o.type === OPTION_TYPE.SubcommandGroup));
    if (!sub) throw new SandboxRequestError(`/${request.name} has no subcommand "${part}"`);
    wrap.push((inner) => [{ name: sub.name as string, type: sub.type as number, options: inner }]);
    level = Array.isArray(sub.options) ? sub.options : [];
  }
  if (level.some((o) => isObject(o) && o.type === OPTION_TYPE.Subcommand)) throw new SandboxRequestError(`/${request.name} ${path.join(' ')} needs a subcommand`);

  const resolved: Record<string, Record<string, JsonObject>> = {};
  const addResolved = (kind: string, id: string, value: JsonObject) => {
    (resolved[kind] ??= {})[id] = value;
  };
  const declared = level.filter(isObject);
  for (const name of given.keys()) {
    if (!declared.some((o) => o.name === name)) throw new SandboxRequestError(`/${request.name} has no option "${name}"`);
  }
  const built: JsonObject[] = [];
  for (const option of declared) {
    const name = option.name as string;
    if (!given.has(name)) {
      if (option.required === true) throw new SandboxRequestError(`option "${name}" is required`);
      continue;
    }
    const value = given.get(name);
    const built1 = coerceOption(state, request, option, value, addResolved, uploads);
    built.push({ name, type: option.type as number, value: built1 });
  }
  let options: JsonObject[] = built;
  for (const apply of wrap.reverse()) options = apply(options);
  const data: JsonObject = { id: command.id as string, name: command.name as string, type: 1, options, resolved: resolved as JsonObject };
  if (typeof command.guild_id === 'string') data.guild_id = command.guild_id;
  return { command, data };
}

function normalizeGivenOptions(options: InvokeRequest['options']): Map<string, unknown> {
  const map = new Map<string, unknown>();
  if (Array.isArray(options)) {
    for (const item of options) {
      if (!isObject(item as Json) || typeof item.name !== 'string') throw new SandboxRequestError('options must be an object or a list of {name, value}');
      map.set(item.name, item.value);
    }
  } else if (options && typeof options === 'object') {
    for (const [name, value] of Object.entries(options)) if (value !== undefined && value !== null && value !== '') map.set(name, value);
  } else if (options !== undefined && options !== null) {
    throw new SandboxRequestError('options must be an object or a list of {name, value}');
  }
  return map;
}

function coerceOption(
  state: EmulatorState,
  request: InvokeRequest,
  option: JsonObject,
  raw: unknown,
  addResolved: (kind: string, id: string, value: JsonObject) => void,
  uploads: Map<string, JsonObject>,
): Json {
  const name = option.name as string;
  const fail = (why: string): never => {
    throw new SandboxRequestError(`option "${name}": ${why}`);
  };
  const checkChoices = (value: string | number) => {
    if (Array.isArray(option.choices) && option.choices.length > 0 && !option.choices.some((c) => isObject(c) && c.value === value)) {
      fail(`${JSON.stringify(value)} is not one of the choices (${option.choices.map((c) => (isObject(c) ? JSON.stringify(c.value) : '')).join(', ')})`);
    }
  };
  switch (option.type) {
    case OPTION_TYPE.String: {
      if (typeof raw !== 'string' && typeof raw !== 'number') fail('must be a string');
      const value = String(raw);
      const length = [...value].length;
      const min = typeof option.min_length === 'number' ? option.min_length : 0;
      const max = typeof option.max_length === 'number' ? option.max_length : 6000;
      if (length < Math.max(min, 1)) fail(`must be at least ${Math.max(min, 1)} characters`);
      if (length > max) fail(`must be at most ${max} characters`);
      checkChoices(value);
      return value;
    }
    case OPTION_TYPE.Integer:
    case OPTION_TYPE.Number: {
      const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
      if (!Number.isFinite(value)) fail(`${JSON.stringify(raw)} is not a number`);
      if (option.type === OPTION_TYPE.Integer && !Number.isInteger(value)) fail(`${JSON.stringify(raw)} is not an integer`);
      if (Math.abs(value) > 2 ** 53) fail('is out of range');
      if (typeof option.min_value === 'number' && value < option.min_value) fail(`must be at least ${option.min_value}`);
      if (typeof option.max_value === 'number' && value > option.max_value) fail(`must be at most ${option.max_value}`);
      checkChoices(value);
      return value;
    }
    case OPTION_TYPE.Boolean: {
      if (raw === true || raw === 'true') return true;
      if (raw === false || raw === 'false') return false;
      return fail('must be true or false');
    }
    case OPTION_TYPE.User:
    case OPTION_TYPE.Mentionable: {
      const id = String(raw);
      const user = state.users.get(id);
      const member = state.member(request.guild_id, id);
      if (user && member) {
        addResolved("users", id, apiUser(user) as JsonObject);
        const { user: _u, ...memberFields } = apiMember(state, member);
        addResolved('members', id, { ...memberFields, permissions: state.channelPermissions(request.channel_id, id).toString() } as JsonObject);
        return id;
      }
      const role = state.guilds.get(request.guild_id)?.roles.find((r) => r.id === id);
      if (option.type === OPTION_TYPE.Mentionable && role) {
        addResolved('roles', id, apiRole(role) as JsonObject);
        return id;
      }
      return fail(`${id} is not a member of this guild`);
    }
    case OPTION_TYPE.Role: {
      const id = String(raw);
      const role = state.guilds.get(request.guild_id)?.roles.find((r) => r.id === id);
      if (!role) fail(`${id} is not a role of this guild`);
      addResolved('roles', id, apiRole(role!) as JsonObject);
      return id;
    }
    case OPTION_TYPE.Channel: {
      const id = String(raw);
      const channel = state.channels.get(id);
      if (!channel || channel.guildId !== request.guild_id) fail(`${id} is not a channel of this guild`);
      if (Array.isArray(option.channel_types) && option.channel_types.length > 0 && !option.channel_types.includes(0)) fail('text channels are not accepted');
      const { guild_id: _g, position: _p, permission_overwrites: _o, ...partial } = apiChannel(channel!);
      addResolved('channels', id, { ...partial, permissions: state.channelPermissions(id, request.user_id).toString() } as JsonObject);
      return id;
    }
    case OPTION_TYPE.Attachment: {
      const id = String(isObject(raw as Json) ? (raw as JsonObject).id : raw);
      const attachment = uploads.get(id);
      if (!attachment) fail('must be the id of an attachment uploaded through POST /_sandbox/attachments');
      addResolved('attachments', id, attachment!);
      return id;
    }
    default:
      return fail(`unsupported option type ${String(option.type)}`);
  }
}

/**
 * Builds an autocomplete interaction's `data`: the options typed so far (partial values, not validated, as Discord
 * sends them) with `focused: true` on the one being typed, which must have `autocomplete: true`.
 */
export function resolveAutocomplete(state: EmulatorState, commands: CommandStore, request: InvokeRequest & { focused: string }): JsonObject {
  const channel = state.channels.get(request.channel_id);
  if (!channel || channel.guildId !== request.guild_id) throw new SandboxRequestError(`channel ${request.channel_id} is not a channel of guild ${request.guild_id}`);
  if (!state.member(request.guild_id, request.user_id)) throw new SandboxRequestError(`user ${request.user_id} is not a member of guild ${request.guild_id}`);
  const chatInput = (c: JsonObject) => c.type === 1 && c.name === request.name;
  const command = commands.list(request.guild_id).find(chatInput) ?? commands.list(null).find(chatInput);
  if (!command) throw new SandboxRequestError(`no registered chat-input command named "${request.name}"`);
  let level: Json[] = Array.isArray(command.options) ? command.options : [];
  const wrap: ((inner: JsonObject[]) => JsonObject[])[] = [];
  for (const part of (request.subcommand ?? '').trim().split(/\s+/).filter(Boolean)) {
    const sub = level.find((o): o is JsonObject => isObject(o) && o.name === part && (o.type === OPTION_TYPE.Subcommand || o.type === OPTION_TYPE.SubcommandGroup));
    if (!sub) throw new SandboxRequestError(`/${request.name} has no subcommand "${part}"`);
    wrap.push((inner) => [{ name: sub.name as string, type: sub.type as number, options: inner }]);
    level = Array.isArray(sub.options) ? sub.options : [];
  }
  const declared = level.filter(isObject);
  const focused = declared.find((o) => o.name === request.focused);
  if (!focused) throw new SandboxRequestError(`/${request.name} has no option "${request.focused}"`);
  if (focused.autocomplete !== true) throw new SandboxRequestError(`option "${request.focused}" does not have autocomplete`);
  const given = normalizeGivenOptions(request.options);
  if (!given.has(request.focused)) given.set(request.focused, '');
  let options: JsonObject[] = [];
  for (const option of declared) {
    if (!given.has(option.name as string)) continue;
    const value = given.get(option.name as string);
    const entry: JsonObject = { name: option.name as string, type: option.type as number, value: typeof value === 'number' || typeof value === 'boolean' ? value : String(value) };
    if (option.name === request.focused) entry.focused = true;
    options.push(entry);
  }
  for (const apply of wrap.reverse()) options = apply(options);
  const data: JsonObject = { id: command.id as string, name: command.name as string, type: 1, options };
  if (typeof command.guild_id === 'string') data.guild_id = command.guild_id;
  return data;
}
