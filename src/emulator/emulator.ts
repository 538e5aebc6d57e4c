import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readRequestBody, type ParsedBody } from './bodies.js';
import { EmulatorClock } from './clock.js';
import { CommandStore, type InvokeRequest } from './commands.js';
import { DiscordHttpError, SandboxRequestError, notFound, unauthorized } from './errors.js';
import { Gateway, INTENT, type GatewaySession } from './gateway.js';
import { InteractionManager, type ClickRequest } from './interactions.js';
import { MessageStore } from './messages.js';
import { DEFAULT_RATE_LIMITS, RateLimiter, type RateLimitRule } from './ratelimit.js';
import { buildRestRoutes, type RestRoute } from './rest.js';
import { drain, matchRoute, sendJson, sendNoContent } from './router.js';
import { SnowflakeGenerator } from './snowflake.js';
import { DEFAULT_SEED, EmulatorState, apiChannel, apiMember, apiRole, apiUser, gatewayGuildCreate, loadSeedFile, type SeedConfig } from './state.js';
import { handleControlRequest } from './control.js';
import { servePage } from './page.js';
import type { JsonObject } from './validation.js';

export interface EmulatorOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Seed data; defaults to two guilds × (general, NSFW channel) × (admin + two members). */
  seed?: SeedConfig;
  /** A JSON file with the shape of `SeedConfig`; wins over `seed`. */
  seedFile?: string;
  /** Gateway HELLO heartbeat interval (Discord: 41 250 ms). */
  heartbeatIntervalMs?: number;
  /** Close (4009) a connection silent for this many heartbeat intervals (default 1.5; 0 = never). */
  heartbeatTimeoutFactor?: number;
  /** Time to the initial interaction response before 10062 (Discord: 3 s). */
  ackDeadlineMs?: number;
  /** Interaction token life before 50027 (Discord: 15 min). */
  tokenLifetimeMs?: number;
  /** Largest attachment (Discord, unboosted: 10 MiB); larger → 413 / 40005. */
  attachmentSizeLimit?: number;
  /** Per-route limits keyed `METHOD /template`, merged over the defaults; `false` turns bucket limits off. */
  rateLimits?: Record<string, RateLimitRule> | false;
  /**
   * Minimum time between two IDENTIFYs of one identify bucket (`shard_id % max_concurrency`); a faster one gets op 9
   * Invalid Session (Discord: 5 000 ms). Default 0: not enforced, so tests may reconnect freely.
   */
  identifyIntervalMs?: number;
}

export interface RequestLogEntry {
  at: string;
  method: string;
  route: string;
  path: string;
  status: number;
  code?: number;
}

/** What `/_sandbox/bot/restart` drives; `BotSupervisor` implements it. */
export interface BotController {
  restart(options: { hard: boolean }): Promise<void>;
  status(): Record<string, unknown>;
}

export type FaultRequest =
  | { kind: 'rate_limit'; route: string; count?: number; retry_after?: number; global?: boolean }
  | { kind: 'server_error'; route: string; count?: number; status?: number; multipart?: boolean }
  | { kind: 'connection_reset'; route: string; count?: number; multipart?: boolean }
  | { kind: 'gateway_drop'; shard?: number }
  | { kind: 'gateway_close'; code?: number; shard?: number }
  | { kind: 'gateway_reconnect'; shard?: number }
  | { kind: 'advance_clock'; seconds: number };

const API_PREFIX = /^\/api(?:\/v(\d+))?(?=\/|$)/;

/**
 * A control route added by whoever runs the emulator (the sandbox CLI's `/_sandbox/workers`), so that the emulator
 * serves things it knows nothing about without importing them. `ids` are the path's numeric segments in order,
 * `body` the JSON body of a POST (`{}` for a GET); the answer is sent as JSON with its status.
 */
export type ControlRouteHandler = (request: { ids: number[]; body: Record<string, unknown> }) => Promise<{ status: number; body: unknown }> | { status: number; body: unknown };

/**
 * A local Discord (API v10) for discord.js: REST under `/api/v10` (and `/api`), the gateway at `/gateway`, a CDN at
 * `/cdn`, the control API at `/_sandbox` and the sandbox page at `/`. Start it with `startDiscordEmulator()`.
 *
 * Events: `bot-ready` (GatewaySession) when a client has IDENTIFYed and received READY and its GUILD_CREATEs;
 * `change` after anything the control API can observe changed.
 */
export class DiscordEmulator extends EventEmitter {
  readonly clock = new EmulatorClock();
  readonly ids = new SnowflakeGenerator(() => this.clock.now());
  readonly state: EmulatorState;
  readonly messages: MessageStore;
  readonly commands: CommandStore;
  readonly gateway: Gateway;
  readonly interactions: InteractionManager;
  readonly rateLimiter: RateLimiter;
  readonly requestLog: RequestLogEntry[] = [];
  readonly options: Required<Omit<EmulatorOptions, 'seed' | 'seedFile' | 'rateLimits'>>;
  private readonly server: Server;
  private readonly routes: RestRoute[];
  private boundPort = 0;
  private bot: BotController | null = null;
  private readonly extraControlRoutes = new Map<string, ControlRouteHandler>();
  private readyCount = 0;
  private lastReadyAt = 0;

  constructor(options: EmulatorOptions = {}) {
    super();
    this.setMaxListeners(100);
    this.options = {
      port: options.port ?? 0,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
      heartbeatTimeoutFactor: options.heartbeatTimeoutFactor ?? 1.5,
      ackDeadlineMs: options.ackDeadlineMs ?? 3_000,
      tokenLifetimeMs: options.tokenLifetimeMs ?? 15 * 60_000,
      attachmentSizeLimit: options.attachmentSizeLimit ?? 10 * 1024 * 1024,
      identifyIntervalMs: options.identifyIntervalMs ?? 0,
    };
    const seed = options.seedFile ? loadSeedFile(options.seedFile) : (options.seed ?? DEFAULT_SEED);
    this.state = new EmulatorState(seed, this.ids, () => new Date(this.clock.now()).toISOString());
    const now = () => this.clock.now();
    this.messages = new MessageStore(this.state, this.ids, now, { cdnBase: () => this.cdnBase, maxAttachmentBytes: this.options.attachmentSizeLimit });
    this.commands = new CommandStore(this.state, this.ids);
    this.gateway = new Gateway({
      token: () => this.state.botToken,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      heartbeatTimeoutFactor: this.options.heartbeatTimeoutFactor,
      resumeUrl: () => this.gatewayUrl,
      readyPayload: (session, guildIds) => this.readyPayload(session, guildIds),
      guildIds: () => [...this.state.guilds.keys()],
      guildCreatePayload: (guildId) => {
        const guild = this.state.guilds.get(guildId);
        return guild ? gatewayGuildCreate(this.state, guild) : null;
      },
      guildMembers: (guildId) => (this.state.guilds.get(guildId)?.members ?? []).map((m) => apiMember(this.state, m)),
      now,
      sessionStartLimit: {
        total: this.state.gateway.sessionStartTotal,
        maxConcurrency: this.state.gateway.maxConcurrency,
        resetAfterMs: 24 * 60 * 60 * 1000,
        identifyIntervalMs: this.options.identifyIntervalMs,
      },
      maxGuildsPerSession: this.state.gateway.maxGuildsPerSession,
    });
    this.gateway.on('ready', (session: GatewaySession) => {
      this.readyCount += 1;
      this.lastReadyAt = Date.now();
      this.emit('bot-ready', session);
      this.emit('change');
    });
    this.gateway.on('resumed', () => this.emit('change'));
    this.gateway.on('disconnected', () => this.emit('change'));
    this.interactions = new InteractionManager(this.state, this.ids, now, this.messages, this.commands, this.gateway, {
      ackDeadlineMs: this.options.ackDeadlineMs,
      tokenLifetimeMs: this.options.tokenLifetimeMs,
      attachmentSizeLimit: this.options.attachmentSizeLimit,
    });
    this.interactions.onChange(() => this.emit('change'));
    this.rateLimiter = new RateLimiter({ ...DEFAULT_RATE_LIMITS, ...(options.rateLimits || {}) }, options.rateLimits !== false);
    this.routes = buildRestRoutes({
      state: this.state,
      messages: this.messages,
      commands: this.commands,
      interactions: this.interactions,
      gateway: this.gateway,
      gatewayUrl: () => this.gatewayUrl,
      recommendedShards: () => this.recommendedShards,
    });
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { message: '500: Internal Server Error', code: 0, detail: String(error) });
        else res.destroy();
      });
    });
    this.server.on('upgrade', (req, socket, head) => {
      const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
      if (path === '/gateway' || path === '/gateway/') this.gateway.handleUpgrade(req, socket, head);
      else socket.destroy();
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, '127.0.0.1', () => resolve());
    });
    this.boundPort = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    await this.gateway.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  get port(): number {
    return this.boundPort;
  }
  get url(): string {
    return `http://127.0.0.1:${this.boundPort}`;
  }
  /** For discord.js `rest.api` (it appends `/v10` itself) and `DISCORD_API_BASE`. */
  get apiBase(): string {
    return `${this.url}/api`;
  }
  get cdnBase(): string {
    return `${this.url}/cdn`;
  }
  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.boundPort}/gateway`;
  }
  get token(): string {
    return this.state.botToken;
  }
  get applicationId(): string {
    return this.state.applicationId;
  }

  /** The environment the bot reads to talk to this emulator instead of Discord. */
  botEnv(): Record<string, string> {
    return { DISCORD_TOKEN: this.token, DISCORD_APP_ID: this.applicationId, DISCORD_API_BASE: this.apiBase, DISCORD_CDN_BASE: this.cdnBase };
  }

  attachBot(controller: BotController | null): void {
    this.bot = controller;
  }

  /**
   * Adds a route to the control API: `route` is `"<METHOD> /<path>"` with `:id` for each numeric segment, e.g.
   * `"POST /workers/:id/kill"` (served at `/_sandbox/workers/0/kill`). The built-in routes cannot be replaced.
   */
  addControlRoute(route: string, handler: ControlRouteHandler): void {
    if (!/^(GET|POST) \/\S*$/.test(route)) throw new Error(`a control route is "GET /path" or "POST /path", not "${route}"`);
    this.extraControlRoutes.set(route, handler);
  }

  /** The handler `addControlRoute` registered for this route, if any. */
  controlRoute(route: string): ControlRouteHandler | undefined {
    return this.extraControlRoutes.get(route);
  }

  get botController(): BotController | null {
    return this.bot;
  }

  /** Number of completed IDENTIFY → READY → GUILD_CREATE handshakes so far. */
  get botReadyCount(): number {
    return this.readyCount;
  }

  /**
   * Resolves once a handshake after `afterCount` (default: now) has completed and every shard of the bot's shard
   * count has a live session, so a sharded bot is ready when all its shards are (an unsharded one: its one session).
   * Resolves with the latest session that became ready, or null if the bot was ready already.
   */
  waitForBotReady(options: { afterCount?: number; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<GatewaySession | null> {
    const afterCount = options.afterCount ?? this.readyCount;
    const isReady = () => this.readyCount > afterCount && this.allShardsConnected();
    if (isReady()) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      let latest: GatewaySession | null = null;
      const onReady = (session: GatewaySession) => {
        latest = session;
        onChange();
      };
      // A shard that resumes (rather than identifies) completes readiness too.
      const onChange = () => {
        if (!isReady()) return;
        cleanup();
        resolve(latest);
      };
      const onAbort = () => {
        cleanup();
        reject(new Error('aborted while waiting for the bot to become ready'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`the bot did not IDENTIFY and get READY on every shard within ${options.timeoutMs ?? 60_000} ms`));
      }, options.timeoutMs ?? 60_000);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('bot-ready', onReady);
        this.off('change', onChange);
        options.signal?.removeEventListener('abort', onAbort);
      };
      this.on('bot-ready', onReady);
      this.on('change', onChange);
      options.signal?.addEventListener('abort', onAbort);
    });
  }

  /** Whether every shard of the bot's shard count (see `shardsView()`) has a live session. */
  allShardsConnected(): boolean {
    return this.shardsView().every((shard) => shard.connected);
  }

  // -------------------------------------------------------------------------------------------------------------
  // In-process equivalents of the control API (same semantics as the HTTP routes)

  /** As `POST /_sandbox/commands`. Throws SandboxRequestError (status 400) when Discord's client would refuse. */
  invokeCommand(request: InvokeRequest): { interaction_id: string; delivered: boolean } {
    const record = this.interactions.invokeCommand(request);
    return { interaction_id: record.id, delivered: record.delivered > 0 };
  }

  /** As `POST /_sandbox/clicks`. */
  click(request: ClickRequest): { interaction_id: string; delivered: boolean } {
    const record = this.interactions.click(request);
    return { interaction_id: record.id, delivered: record.delivered > 0 };
  }

  /** As `GET /_sandbox/interactions/:id`. */
  interaction(id: string): JsonObject | null {
    return this.interactions.view(id);
  }

  /** As `GET /_sandbox/channels/:id/messages`: channel history, oldest first, ephemeral messages excluded. */
  channelMessages(channelId: string): JsonObject[] {
    return this.messages.channelHistory(channelId).map((m) => this.messages.sandboxMessage(m));
  }

  /** Resolves with the interaction view once `predicate` holds (checked on every change), or rejects on timeout. */
  waitForInteraction(id: string, predicate: (view: JsonObject) => boolean, timeoutMs = 30_000): Promise<JsonObject> {
    return this.waitFor(() => {
      const view = this.interaction(id);
      return view && predicate(view) ? view : null;
    }, timeoutMs, `interaction ${id} did not reach the expected state`);
  }

  /** Resolves with the first channel message matching `predicate`. */
  waitForChannelMessage(channelId: string, predicate: (message: JsonObject) => boolean, timeoutMs = 30_000): Promise<JsonObject> {
    return this.waitFor(() => this.channelMessages(channelId).find(predicate) ?? null, timeoutMs, `no message in channel ${channelId} matched`);
  }

  /** Generic: resolves with `probe()`'s first non-null value, re-probing on every change. */
  waitFor<T>(probe: () => T | null, timeoutMs: number, what: string): Promise<T> {
    const first = probe();
    if (first !== null) return Promise.resolve(first);
    return new Promise((resolve, reject) => {
      const onChange = () => {
        const value = probe();
        if (value !== null) {
          cleanup();
          resolve(value);
        }
      };
      // Deadline-based states (failed, token_expired) change without an event, so poll gently as well.
      const poll = setInterval(onChange, 100);
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.off('change', onChange);
      };
      this.on('change', onChange);
    });
  }

  /** As `POST /_sandbox/faults`. */
  async injectFault(fault: FaultRequest): Promise<Record<string, unknown>> {
    switch (fault.kind) {
      case 'rate_limit': {
        if (typeof fault.route !== 'string') throw new SandboxRequestError('route is required');
        const count = fault.count ?? 1;
        const retryAfter = fault.retry_after ?? 1;
        if (!(count >= 1) || !(retryAfter > 0)) throw new SandboxRequestError('count must be ≥ 1 and retry_after > 0');
        this.rateLimiter.inject({ kind: 'rate_limit', route: fault.route, count, retryAfter, status: 429, global: fault.global === true });
        return { injected: count };
      }
      case 'server_error': {
        if (typeof fault.route !== 'string') throw new SandboxRequestError('route is required');
        const count = fault.count ?? 1;
        const status = fault.status ?? 500;
        if (status < 500 || status > 599) throw new SandboxRequestError('status must be 5xx');
        this.rateLimiter.inject({ kind: 'server_error', route: fault.route, count, retryAfter: 0, status, global: false, multipartOnly: fault.multipart === true });
        return { injected: count };
      }
      case 'connection_reset': {
        if (typeof fault.route !== 'string') throw new SandboxRequestError('route is required');
        const count = fault.count ?? 1;
        if (!(count >= 1)) throw new SandboxRequestError('count must be ≥ 1');
        this.rateLimiter.inject({ kind: 'connection_reset', route: fault.route, count, retryAfter: 0, status: 0, global: false, multipartOnly: fault.multipart === true });
        return { injected: count };
      }
      case 'gateway_drop':
        return { dropped: this.gateway.dropConnections(faultShard(fault.shard)) };
      case 'gateway_close':
        return { closed: this.gateway.closeConnections(fault.code ?? 4000, 'closed by the sandbox', faultShard(fault.shard)) > 0 };
      case 'gateway_reconnect':
        return { requested: this.gateway.requestReconnect(faultShard(fault.shard)) > 0 };
      case 'advance_clock':
        if (typeof fault.seconds !== 'number') throw new SandboxRequestError('seconds is required');
        try {
          this.clock.advance(fault.seconds);
        } catch (error) {
          throw new SandboxRequestError((error as Error).message);
        }
        this.emit('change');
        return { clock_offset_seconds: this.clock.offsetSeconds };
      default:
        throw new SandboxRequestError(`unknown fault kind ${JSON.stringify((fault as { kind?: unknown }).kind)}`);
    }
  }

  /** As `POST /_sandbox/members`: changes a member's roles (admin flag and/or explicit role ids); GUILD_MEMBER_UPDATE. */
  updateMember(request: { guild_id: string; user_id: string; admin?: boolean; role_ids?: string[] }): JsonObject {
    const guild = this.state.guilds.get(request.guild_id);
    const member = guild?.members.find((m) => m.userId === request.user_id);
    if (!guild || !member) throw new SandboxRequestError(`user ${request.user_id} is not a member of guild ${request.guild_id}`, 404);
    if (request.role_ids !== undefined) {
      if (!Array.isArray(request.role_ids) || request.role_ids.some((id) => !guild.roles.some((r) => r.id === id && r.id !== guild.id))) throw new SandboxRequestError('role_ids must be ids of this guild\'s roles (not @everyone)');
      member.roleIds = [...new Set(request.role_ids)];
    }
    if (request.admin === true && !member.roleIds.includes(guild.adminRoleId)) member.roleIds.push(guild.adminRoleId);
    if (request.admin === false) member.roleIds = member.roleIds.filter((id) => id !== guild.adminRoleId);
    const data = { ...apiMember(this.state, member), guild_id: guild.id };
    this.gateway.dispatch('GUILD_MEMBER_UPDATE', data, INTENT.GuildMembers);
    this.emit('change');
    return { user_id: member.userId, role_ids: member.roleIds, admin: this.state.isAdmin(guild.id, member.userId), permissions: this.state.basePermissions(guild.id, member.userId).toString() };
  }

  /** As `POST /_sandbox/roles`: creates a role (GUILD_ROLE_CREATE). */
  createRole(request: { guild_id: string; name: string; permissions?: string }): JsonObject {
    const guild = this.state.guilds.get(request.guild_id);
    if (!guild) throw new SandboxRequestError(`no guild ${request.guild_id}`, 404);
    if (typeof request.name !== 'string' || request.name.length === 0 || request.name.length > 100) throw new SandboxRequestError('name must be 1–100 characters');
    if (request.permissions !== undefined && !/^\d+$/.test(String(request.permissions))) throw new SandboxRequestError('permissions must be a decimal bitfield string');
    const role = { id: this.ids.next(), name: request.name, permissions: BigInt(request.permissions ?? '0'), position: guild.roles.length, managed: false };
    guild.roles.push(role);
    this.gateway.dispatch('GUILD_ROLE_CREATE', { guild_id: guild.id, role: apiRole(role) }, INTENT.Guilds);
    this.emit('change');
    return apiRole(role) as JsonObject;
  }

  /** As `POST /_sandbox/channels/:id`: renames a channel or flips its NSFW flag (CHANNEL_UPDATE). */
  updateChannel(channelId: string, request: { name?: string; nsfw?: boolean }): JsonObject {
    const channel = this.state.channels.get(channelId);
    if (!channel) throw new SandboxRequestError(`no channel ${channelId}`, 404);
    if (request.name !== undefined) {
      if (typeof request.name !== 'string' || !/^[a-z0-9_-]{1,100}$/.test(request.name)) throw new SandboxRequestError('name must be 1–100 lower-case letters, digits, - or _');
      channel.name = request.name;
    }
    if (request.nsfw !== undefined) {
      if (typeof request.nsfw !== 'boolean') throw new SandboxRequestError('nsfw must be true or false');
      channel.nsfw = request.nsfw;
    }
    this.gateway.dispatch('CHANNEL_UPDATE', apiChannel(channel), INTENT.Guilds);
    this.emit('change');
    return { id: channel.id, name: channel.name, nsfw: channel.nsfw };
  }

  /** As `GET /_sandbox/state`. */
  stateView(): JsonObject {
    return {
      application_id: this.state.applicationId,
      bot_user: { id: this.state.botUser.id, username: this.state.botUser.username },
      guilds: [...this.state.guilds.values()].map((g) => ({
        id: g.id,
        name: g.name,
        owner_id: g.ownerId,
        channels: g.channels.map((c) => ({ id: c.id, name: c.name, nsfw: c.nsfw })),
        roles: g.roles.map((r) => ({ id: r.id, name: r.name, permissions: r.permissions.toString(), managed: r.managed })),
        members: g.members.filter((m) => m.userId !== this.state.botUser.id).map((m) => ({ user_id: m.userId, role_ids: m.roleIds, admin: this.state.isAdmin(g.id, m.userId), permissions: this.state.basePermissions(g.id, m.userId).toString() })),
      })),
      users: [...this.state.users.values()]
        .filter((u) => !u.bot)
        .map((u) => ({
          id: u.id,
          username: u.username,
          global_name: u.globalName,
          admin: [...this.state.guilds.keys()].some((gid) => this.state.isAdmin(gid, u.id)),
          admin_guild_ids: [...this.state.guilds.keys()].filter((gid) => this.state.isAdmin(gid, u.id)),
        })),
      bot_connected: this.gateway.liveSessions().length > 0,
      shards: this.shardsView(),
      clock_offset_seconds: this.clock.offsetSeconds,
    };
  }

  /**
   * The bot's shards: as many as it runs with (the shard count of its latest session), or before it connects as
   * many as `GET /gateway/bot` recommends; each with whether a session of that shard is connected and its guilds.
   */
  shardsView(): { id: number; connected: boolean; guild_ids: string[] }[] {
    const count = this.gateway.currentShardCount() ?? this.recommendedShards;
    const live = this.gateway.liveSessions();
    return Array.from({ length: count }, (_, id) => ({
      id,
      connected: live.some((s) => s.shard[0] === id && s.shard[1] === count),
      guild_ids: this.gateway.guildIdsOnShard(id, count),
    }));
  }

  /** `shards` of `GET /gateway/bot`: the seed's `gateway.shards`, else one per 1 000 guilds as Discord advises. */
  get recommendedShards(): number {
    return this.state.gateway.recommendedShards ?? Math.max(1, Math.ceil(this.state.guilds.size / 1000));
  }

  // -------------------------------------------------------------------------------------------------------------
  // HTTP

  private readyPayload(session: GatewaySession, guildIds: string[]): Record<string, unknown> {
    return {
      v: 10,
      user: { ...apiUser(this.state.botUser), verified: true, mfa_enabled: false, email: null },
      user_settings: {},
      guilds: guildIds.map((id) => ({ id, unavailable: true })),
      guild_join_requests: [],
      relationships: [],
      private_channels: [],
      presences: [],
      session_id: session.id,
      session_type: 'normal',
      resume_gateway_url: this.gatewayUrl,
      shard: session.shard,
      application: { id: this.state.applicationId, flags: 0 },
      geo_ordered_rtc_regions: [],
      auth_session_id_hash: '',
      _trace: ['["imagine-emulator",{}]'],
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = url.pathname;
    const apiMatch = API_PREFIX.exec(path);
    if (apiMatch) return this.handleRest(req, res, apiMatch[1] ?? null, path.slice(apiMatch[0].length) || '/', url.searchParams);
    if (path.startsWith('/cdn/') || path.startsWith('/media/')) return this.handleCdn(req, res, path);
    if (path === '/_sandbox' || path.startsWith('/_sandbox/')) return handleControlRequest(this, req, res, path.slice('/_sandbox'.length) || '/', url.searchParams);
    if (servePage(req, res, path)) return;
    drain(req);
    sendJson(res, 404, { message: '404: Not Found', code: 0 });
  }

  private async handleRest(req: IncomingMessage, res: ServerResponse, version: string | null, path: string, query: URLSearchParams): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    let loggedPath = path;
    const log = (route: string, status: number, code?: number) => {
      this.requestLog.push({ at: new Date(this.clock.now()).toISOString(), method, route, path: loggedPath, status, ...(code === undefined ? {} : { code }) });
      this.emit('change');
    };
    if (version !== null && version !== '10' && version !== '9') {
      drain(req);
      sendJson(res, 400, { message: 'Invalid API version', code: 50041 });
      log('unknown', 400, 50041);
      return;
    }
    const { match, pathExists } = matchRoute(this.routes, method, path);
    if (!match) {
      drain(req);
      // Recorded so a test can assert that the bot called nothing the emulator does not know.
      const status = pathExists ? 405 : 404;
      sendJson(res, status, { message: pathExists ? '405: Method Not Allowed' : '404: Not Found', code: 0 });
      log('unknown', status, 0);
      return;
    }
    const { route, params } = match;
    // Interaction tokens are credentials: the log shows `:token` in their place.
    if (params.token) loggedPath = path.split('/').map((segment) => (segment === params.token ? ':token' : segment)).join('/');
    let rateHeaders: Record<string, string> = {};
    try {
      if (route.auth === 'bot') {
        const header = req.headers.authorization ?? '';
        if (header !== `Bot ${this.state.botToken}`) throw unauthorized();
      }
      const interactionRoute = route.auth === 'none';
      const major = params.channel_id ?? params.guild_id ?? (params.token ? `${params.application_id ?? params.interaction_id}:${params.token}` : 'global');
      const fault = this.rateLimiter.takeFault(method, route.template, path, /^multipart\//i.test(req.headers['content-type'] ?? ''));
      if (fault?.kind === 'connection_reset') {
        // The peer vanishes mid-request, as a keep-alive connection closed by the other side does: no answer at all,
        // the client sees ECONNRESET / "other side closed" (EPIPE when it was still writing).
        log(route.template, 0, 0);
        req.socket.destroy();
        return;
      }
      if (fault?.kind === 'server_error') {
        drain(req);
        sendJson(res, fault.status, { message: `${fault.status}: Injected server error`, code: 0 });
        log(route.template, fault.status, 0);
        return;
      }
      if (fault?.kind === 'rate_limit') {
        drain(req);
        this.sendRateLimited(res, fault.retryAfter, fault.global, fault.global ? 'global' : 'user', { 'X-RateLimit-Limit': '1', 'X-RateLimit-Bucket': RateLimiter.bucketHash(`${method} ${route.template}`) });
        log(route.template, 429);
        return;
      }
      const decision = this.rateLimiter.take(method, route.template, major, interactionRoute);
      rateHeaders = decision.headers;
      if (decision.limited) {
        drain(req);
        this.sendRateLimited(res, decision.limited.retryAfter, decision.limited.global, decision.limited.scope, decision.headers);
        log(route.template, 429);
        return;
      }
      const body: ParsedBody =
        method === 'GET' || method === 'HEAD' || method === 'DELETE'
          ? (drain(req), { json: null, files: [], multipart: false })
          : await readRequestBody(req, { maxFileBytes: this.options.attachmentSizeLimit, maxJsonBytes: 8 * 1024 * 1024 });
      const result = route.handler({ params, query, body });
      if (result.status === 204) sendNoContent(res, rateHeaders);
      else sendJson(res, result.status, result.json, rateHeaders);
      log(route.template, result.status);
    } catch (error) {
      if (error instanceof DiscordHttpError) {
        drain(req);
        sendJson(res, error.status, error.toBody(), rateHeaders);
        log(route.template, error.status, error.code);
        return;
      }
      throw error;
    }
  }

  private sendRateLimited(res: ServerResponse, retryAfter: number, global: boolean, scope: string, headers: Record<string, string>): void {
    // Discord's Retry-After header is whole seconds (rounded up); the body has the precise float.
    sendJson(
      res,
      429,
      { message: 'You are being rate limited.', retry_after: Number(retryAfter.toFixed(3)), global, code: 0 },
      {
        ...headers,
        'Retry-After': String(Math.ceil(retryAfter)),
        'X-RateLimit-Remaining': '0',
        'X-RateLimit-Reset-After': retryAfter.toFixed(3),
        'X-RateLimit-Scope': scope,
        ...(global ? { 'X-RateLimit-Global': 'true' } : {}),
      },
    );
  }

  private handleCdn(req: IncomingMessage, res: ServerResponse, path: string): void {
    drain(req);
    const match = /^\/(?:cdn|media)\/(?:ephemeral-)?attachments\/(\d+)\/(\d+)\/([^/]+)$/.exec(path);
    const attachment = match ? this.messages.attachments.get(match[2] ?? '') : undefined;
    if (!match || !attachment || attachment.channelId !== match[1]) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('Not Found');
      return;
    }
    res.writeHead(200, { 'Content-Type': attachment.contentType, 'Content-Length': attachment.size, 'Cache-Control': 'public, max-age=31536000' });
    res.end(req.method === 'HEAD' ? undefined : attachment.data);
  }
}

/** A fault's optional `shard`: a shard id, or undefined for every connection. */
function faultShard(shard: unknown): number | undefined {
  if (shard === undefined) return undefined;
  if (!Number.isSafeInteger(shard) || (shard as number) < 0) throw new SandboxRequestError('shard must be a shard id (an integer ≥ 0)');
  return shard as number;
}

/** Starts an emulator on 127.0.0.1 and resolves once it listens. */
export async function startDiscordEmulator(options: EmulatorOptions = {}): Promise<DiscordEmulator> {
  const emulator = new DiscordEmulator(options);
  await emulator.listen();
  return emulator;
}

export { SandboxRequestError, notFound };
