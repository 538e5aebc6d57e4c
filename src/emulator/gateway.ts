import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { deflateSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';

/** Gateway opcodes and close codes (discord-api-types' GatewayOpcodes / GatewayCloseCodes). */
const OP = { Dispatch: 0, Heartbeat: 1, Identify: 2, PresenceUpdate: 3, VoiceStateUpdate: 4, Resume: 6, Reconnect: 7, RequestGuildMembers: 8, InvalidSession: 9, Hello: 10, HeartbeatAck: 11 } as const;
export const CLOSE = { UnknownError: 4000, UnknownOpcode: 4001, DecodeError: 4002, NotAuthenticated: 4003, AuthenticationFailed: 4004, AlreadyAuthenticated: 4005, SessionTimedOut: 4009, InvalidApiVersion: 4012 } as const;
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
}

export interface GatewayOptions {
  token: () => string;
  heartbeatIntervalMs: number;
  resumeUrl: () => string;
  readyPayload: (session: GatewaySession) => Record<string, unknown>;
  guildCreatePayloads: () => Record<string, unknown>[];
  guildMembers: (guildId: string) => Record<string, unknown>[];
  /** How long a disconnected session can still be resumed. */
  resumeWindowMs?: number;
  /**
   * A connection that sends no heartbeat for this many heartbeat intervals is closed with 4009, as Discord does
   * with clients whose event loop is blocked (default 1.5; 0 disables).
   */
  heartbeatTimeoutFactor?: number;
}

/** Events: `ready` (session) after READY + GUILD_CREATEs; `resumed` (session); `disconnected` (session). */
export class Gateway extends EventEmitter {
  private readonly server = new WebSocketServer({ noServer: true });
  readonly sessions = new Map<string, GatewaySession>();
  private readonly sockets = new Set<WebSocket>();
  private readonly bufferSize = 1000;

  constructor(private readonly options: GatewayOptions) {
    super();
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.server.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
  }

  /** Sends an event to every session that asked for it; buffered for sessions that are disconnected but resumable. */
  dispatch(event: string, data: unknown, requiredIntent = 0): number {
    let delivered = 0;
    const now = Date.now();
    for (const session of [...this.sessions.values()]) {
      if (session.socket === null && session.disconnectedAt !== null && now - session.disconnectedAt > (this.options.resumeWindowMs ?? 300_000)) {
        this.sessions.delete(session.id);
        continue;
      }
      if (requiredIntent !== 0 && (session.intents & requiredIntent) === 0) continue;
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

  /** Simulates a network drop: the sockets die without a close frame (code 1006), sessions stay resumable. */
  dropConnections(): number {
    let count = 0;
    for (const socket of this.sockets) {
      socket.terminate();
      count += 1;
    }
    return count;
  }

  /** Closes every connection with a chosen code (e.g. 4000 to make clients resume). */
  closeConnections(code: number, reason = ''): void {
    for (const socket of this.sockets) socket.close(code, reason);
  }

  /** Asks clients to reconnect and resume (op 7). */
  requestReconnect(): void {
    for (const socket of this.sockets) socket.send(JSON.stringify({ op: OP.Reconnect, d: null }));
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
          };
          this.sessions.set(session.id, session);
          this.sendDirect(session, 'READY', this.options.readyPayload(session));
          for (const guild of this.options.guildCreatePayloads()) this.sendDirect(session, 'GUILD_CREATE', guild);
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
            if (typeof guildId !== 'string') continue;
            this.sendDirect(session, 'GUILD_MEMBERS_CHUNK', { guild_id: guildId, members: this.options.guildMembers(guildId), chunk_index: 0, chunk_count: 1, not_found: [], nonce: d.nonce });
          }
          return;
        }
        default:
          socket.close(CLOSE.UnknownOpcode, 'Unknown opcode.');
      }
    });
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
