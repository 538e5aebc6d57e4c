import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { deflateSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import { SessionStartLimit, parseIdentifyShard, routingGuildId, shardOf, shardReceives, type SessionStartLimitOptions } from './sharding.js';

/** Gateway opcodes and close codes (discord-api-types' GatewayOpcodes / GatewayCloseCodes). */
const OP = { Dispatch: 0, Heartbeat: 1, Identify: 2, PresenceUpdate: 3, VoiceStateUpdate: 4, Resume: 6, Reconnect: 7, RequestGuildMembers: 8, InvalidSession: 9, Hello: 10, HeartbeatAck: 11 } as const;
export const CLOSE = { UnknownError: 4000, UnknownOpcode: 4001, DecodeError: 4002, NotAuthenticated: 4003, AuthenticationFailed: 4004, AlreadyAuthenticated: 4005, SessionTimedOut: 4009, InvalidShard: 4010, ShardingRequired: 4011, InvalidApiVersion: 4012 } as const;
export const INTENT = { Guilds: 1 << 0, GuildMembers: 1 << 1, GuildMessages: 1 << 9, MessageContent: 1 << 15 } as const;

interface BufferedDispatch {
  s: number;
  t: string;
  d: unknown;
}

export interface GatewaySession {
  id: string;
  intents: number;
  seq: number;
  buffer: BufferedDispatch[];
  socket: WebSocket | null;
  compress: boolean;
  identifiedAt: number;
  disconnectedAt: number | null;
  /** True once READY and every GUILD_CREATE went out on the identifying connection. */
  ready: boolean;
  /** `[shard_id, num_shards]` from IDENTIFY; `[0, 1]` for a session that did not ask for a shard. */
  shard: [number, number];
}

export interface GatewayOptions {
  token: () => string;
  heartbeatIntervalMs: number;
  resumeUrl: () => string;
  /** READY for a session; `guildIds` are the guilds on its shard. */
  readyPayload: (session: GatewaySession, guildIds: string[]) => Record<string, unknown>;
  /** Every guild the bot is in, in seed order. */
  guildIds: () => string[];
  guildCreatePayload: (guildId: string) => Record<string, unknown> | null;
  guildMembers: (guildId: string) => Record<string, unknown>[];
  /** How long a disconnected session can still be resumed. */
  resumeWindowMs?: number;
  /**
   * A connection that sends no heartbeat for this many heartbeat intervals is closed with 4009, as Discord does
   * with clients whose event loop is blocked (default 1.5; 0 disables).
   */
  heartbeatTimeoutFactor?: number;
  /** The emulator's clock (session start limit and identify buckets are measured on it). */
  now: () => number;
  sessionStartLimit: SessionStartLimitOptions;
  /** A session that would hold more guilds than this is closed with 4011 Sharding required (Discord: 2500). */
  maxGuildsPerSession: number;
}

/** Events: `ready` (session) after READY + GUILD_CREATEs; `resumed` (session); `disconnected` (session). */
export class Gateway extends EventEmitter {
  private readonly server = new WebSocketServer({ noServer: true });
  readonly sessions = new Map<string, GatewaySession>();
  readonly sessionStartLimit: SessionStartLimit;
  private readonly sockets = new Set<WebSocket>();
  private readonly bufferSize = 1000;

  constructor(private readonly options: GatewayOptions) {
    super();
    this.sessionStartLimit = new SessionStartLimit(options.sessionStartLimit, options.now);
  }

  /** The guilds whose events go to shard `shardId` of `shardCount`, in seed order. */
  guildIdsOnShard(shardId: number, shardCount: number): string[] {
    return this.options.guildIds().filter((id) => shardOf(id, shardCount) === shardId);
  }

  /**
   * The shard count the bot runs with: that of the most recently identified session still known (live or
   * resumable), or null before any session.
   */
  currentShardCount(): number | null {
    let latest: GatewaySession | null = null;
    for (const session of this.resumableSessions()) if (!latest || session.identifiedAt >= latest.identifiedAt) latest = session;
    return latest?.shard[1] ?? null;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.server.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
  }

  /**
   * Sends an event to every session that asked for it (its intents) and whose shard it belongs to
   * (`(guild_id >> 22) % num_shards`; shard 0 for events without a guild), as Discord routes them; buffered for
   * sessions that are disconnected but resumable.
   */
  dispatch(event: string, data: unknown, requiredIntent = 0): number {
    let delivered = 0;
    const guildId = routingGuildId(event, data);
    for (const session of this.resumableSessions()) {
      if (requiredIntent !== 0 && (session.intents & requiredIntent) === 0) continue;
      if (!shardReceives(session.shard, guildId)) continue;
      const payload: BufferedDispatch = { s: ++session.seq, t: event, d: data };
      session.buffer.push(payload);
      if (session.buffer.length > this.bufferSize) session.buffer.shift();
      if (session.socket && session.ready) {
        this.send(session.socket, session, { op: OP.Dispatch, ...payload });
        delivered += 1;
      }
    }
    return delivered;
  }

  /** Sessions with an open, identified connection. */
  liveSessions(): GatewaySession[] {
    return [...this.sessions.values()].filter((s) => s.socket !== null && s.ready);
  }

  /** Sessions that are connected or still within their resume window (expired ones are forgotten here). */
  private resumableSessions(): GatewaySession[] {
    const now = Date.now();
    const alive: GatewaySession[] = [];
    for (const session of [...this.sessions.values()]) {
      if (session.socket === null && session.disconnectedAt !== null && now - session.disconnectedAt > (this.options.resumeWindowMs ?? 300_000)) this.sessions.delete(session.id);
      else alive.push(session);
    }
    return alive;
  }

  /** Every open socket, or with `shardId` only those of sessions identified (or resumed) as that shard. */
  private socketsOf(shardId?: number): WebSocket[] {
    if (shardId === undefined) return [...this.sockets];
    return [...this.sessions.values()].filter((s) => s.socket !== null && s.shard[0] === shardId).map((s) => s.socket as WebSocket);
  }

  /** Simulates a network drop: the sockets die without a close frame (code 1006), sessions stay resumable. */
  dropConnections(shardId?: number): number {
    let count = 0;
    for (const socket of this.socketsOf(shardId)) {
      socket.terminate();
      count += 1;
    }
    return count;
  }

  /** Closes every connection (or one shard's) with a chosen code (e.g. 4000 to make clients resume). */
  closeConnections(code: number, reason = '', shardId?: number): number {
    const sockets = this.socketsOf(shardId);
    for (const socket of sockets) socket.close(code, reason);
    return sockets.length;
  }

  /** Asks clients (or one shard's) to reconnect and resume (op 7). */
  requestReconnect(shardId?: number): number {
    const sockets = this.socketsOf(shardId);
    for (const socket of sockets) socket.send(JSON.stringify({ op: OP.Reconnect, d: null }));
    return sockets.length;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private send(socket: WebSocket, session: GatewaySession | null, payload: unknown): void {
    if (socket.readyState !== socket.OPEN) return;
    const text = JSON.stringify(payload);
    // IDENTIFY `compress: true` asks for each payload as its own zlib stream (binary frames).
    if (session?.compress) socket.send(deflateSync(text));
    else socket.send(text);
  }

  private onConnection(socket: WebSocket, req: IncomingMessage): void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const version = url.searchParams.get('v');
    const encoding = url.searchParams.get('encoding') ?? 'json';
    this.sockets.add(socket);
    let session: GatewaySession | null = null;
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (session && session.socket === socket) {
        session.socket = null;
        session.disconnectedAt = Date.now();
        this.emit('disconnected', session);
      }
    });
    socket.on('error', () => undefined);
    if (version !== null && version !== '10') {
      socket.close(CLOSE.InvalidApiVersion, 'Invalid API version.');
      return;
    }
    if (encoding !== 'json') {
      socket.close(CLOSE.DecodeError, 'Only encoding=json is emulated.');
      return;
    }
    this.send(socket, null, { op: OP.Hello, d: { heartbeat_interval: this.options.heartbeatIntervalMs, _trace: ['["imagine-emulator",{}]'] } });
    const timeoutFactor = this.options.heartbeatTimeoutFactor ?? 1.5;
    let heartbeatTimer: NodeJS.Timeout | null = null;
    const armHeartbeatTimer = () => {
      if (timeoutFactor <= 0) return;
      if (heartbeatTimer) clearTimeout(heartbeatTimer);
      heartbeatTimer = setTimeout(() => socket.close(CLOSE.SessionTimedOut, 'Session timed out: no heartbeat.'), this.options.heartbeatIntervalMs * timeoutFactor);
    };
    armHeartbeatTimer();
    socket.on('close', () => {
      if (heartbeatTimer) clearTimeout(heartbeatTimer);
    });

    socket.on('message', (raw, isBinary) => {
      let message: { op?: unknown; d?: unknown };
      try {
        message = JSON.parse(isBinary ? Buffer.from(raw as Buffer).toString('utf8') : String(raw)) as { op?: unknown; d?: unknown };
      } catch {
        socket.close(CLOSE.DecodeError, 'Error while decoding payload.');
        return;
      }
      const d = (typeof message.d === 'object' && message.d !== null ? message.d : {}) as Record<string, unknown>;
      switch (message.op) {
        case OP.Heartbeat:
          armHeartbeatTimer();
          this.send(socket, session, { op: OP.HeartbeatAck });
          return;
        case OP.Identify: {
          if (session) return socket.close(CLOSE.AlreadyAuthenticated, 'You sent more than one identify payload.');
          if (!this.tokenMatches(d.token)) return socket.close(CLOSE.AuthenticationFailed, 'Authentication failed.');
          const shard = parseIdentifyShard(d.shard);
          if (!shard) return socket.close(CLOSE.InvalidShard, 'Invalid shard.');
          const guildIds = this.guildIdsOnShard(shard[0], shard[1]);
          if (guildIds.length > this.options.maxGuildsPerSession) return socket.close(CLOSE.ShardingRequired, 'Sharding required.');
          const start = this.sessionStartLimit.take(shard[0]);
          // Over the identify bucket's rate (one start per bucket per interval): Invalid Session, not resumable.
          if (start === 'concurrency') return this.send(socket, null, { op: OP.InvalidSession, d: false });
          if (start === 'exhausted') {
            // Discord terminates every session and resets the token; the emulator keeps the token but refuses
            // IDENTIFY with 4004 until the period resets.
            this.endAllSessions(CLOSE.AuthenticationFailed, 'Session start limit reached.');
            return socket.close(CLOSE.AuthenticationFailed, 'Session start limit reached.');
          }
          session = {
            id: randomBytes(16).toString('hex'),
            intents: typeof d.intents === 'number' ? d.intents : 0,
            seq: 0,
            buffer: [],
            socket,
            compress: d.compress === true,
            identifiedAt: Date.now(),
            disconnectedAt: null,
            ready: false,
            shard,
          };
          this.sessions.set(session.id, session);
          this.sendDirect(session, 'READY', this.options.readyPayload(session, guildIds));
          for (const guildId of guildIds) {
            const guild = this.options.guildCreatePayload(guildId);
            if (guild) this.sendDirect(session, 'GUILD_CREATE', guild);
          }
          session.ready = true;
          this.emit('ready', session);
          return;
        }
        case OP.Resume: {
          if (session) return socket.close(CLOSE.AlreadyAuthenticated, 'Already authenticated.');
          const existing = typeof d.session_id === 'string' ? this.sessions.get(d.session_id) : undefined;
          if (!existing || !this.tokenMatches(d.token)) {
            this.send(socket, null, { op: OP.InvalidSession, d: false });
            return;
          }
          if (existing.socket && existing.socket !== socket) existing.socket.terminate();
          session = existing;
          session.socket = socket;
          session.disconnectedAt = null;
          const after = typeof d.seq === 'number' ? d.seq : 0;
          for (const payload of session.buffer) if (payload.s > after) this.send(socket, session, { op: OP.Dispatch, ...payload });
          session.ready = true;
          this.sendDirect(session, 'RESUMED', null);
          this.emit('resumed', session);
          return;
        }
        case OP.PresenceUpdate:
        case OP.VoiceStateUpdate:
          if (!session) socket.close(CLOSE.NotAuthenticated, 'Not authenticated.');
          return;
        case OP.RequestGuildMembers: {
          if (!session) return socket.close(CLOSE.NotAuthenticated, 'Not authenticated.');
          const guildIds = Array.isArray(d.guild_id) ? d.guild_id : [d.guild_id];
          for (const guildId of guildIds) {
            // A shard is only answered about its own guilds.
            if (typeof guildId !== 'string' || !shardReceives(session.shard, guildId)) continue;
            this.sendDirect(session, 'GUILD_MEMBERS_CHUNK', { guild_id: guildId, members: this.options.guildMembers(guildId), chunk_index: 0, chunk_count: 1, not_found: [], nonce: d.nonce });
          }
          return;
        }
        default:
          socket.close(CLOSE.UnknownOpcode, 'Unknown opcode.');
      }
    });
  }

  /** Closes every connection and forgets every session, so none can be resumed. */
  private endAllSessions(code: number, reason: string): void {
    for (const session of this.sessions.values()) session.socket?.close(code, reason);
    this.sessions.clear();
  }

  /** A dispatch to one session, recorded in its replay buffer. */
  private sendDirect(session: GatewaySession, event: string, data: unknown): void {
    const payload: BufferedDispatch = { s: ++session.seq, t: event, d: data };
    session.buffer.push(payload);
    if (session.buffer.length > this.bufferSize) session.buffer.shift();
    if (session.socket) this.send(session.socket, session, { op: OP.Dispatch, ...payload });
  }

  private tokenMatches(token: unknown): boolean {
    return typeof token === 'string' && token.replace(/^Bot\s+/i, '') === this.options.token();
  }
}
