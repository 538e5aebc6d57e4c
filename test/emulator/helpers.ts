import { Client, GatewayIntentBits, type ClientOptions } from 'discord.js';
import { deflateSync } from 'node:zlib';
import WebSocket from 'ws';
import type { DiscordEmulator } from '../../src/emulator/index.js';

/** A real discord.js client pointed at the emulator, logged in and ready (all guilds available). */
export async function connectClient(emulator: DiscordEmulator, options: Partial<ClientOptions> = {}): Promise<Client> {
  const client = new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages],
    ...options,
    rest: { api: emulator.apiBase, cdn: emulator.cdnBase, timeout: 10_000, ...(options.rest ?? {}) },
  });
  const ready = new Promise<void>((resolve) => client.once('clientReady', () => resolve()));
  await client.login(emulator.token);
  await ready;
  return client;
}

/** A valid PNG of `width`×`height` (solid colour), built by hand so the test does not depend on the code under test. */
export function makePng(width: number, height: number, rgb: [number, number, number] = [200, 30, 90]): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const byte of buf) c = (crcTable[(c ^ byte) & 0xff] as number) ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // truecolour RGB
  const rows: Buffer[] = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x += 1) row.set(rgb, 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export async function controlJson<T = Record<string, unknown>>(emulator: DiscordEmulator, method: string, path: string, body?: unknown): Promise<{ status: number; data: T }> {
  const response = await fetch(`${emulator.url}/_sandbox${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, data: (await response.json()) as T };
}

export function firstGuild(emulator: DiscordEmulator) {
  const guild = [...emulator.state.guilds.values()][0];
  if (!guild) throw new Error('no guild seeded');
  const general = guild.channels.find((c) => !c.nsfw);
  const nsfw = guild.channels.find((c) => c.nsfw);
  const users = [...emulator.state.users.values()].filter((u) => !u.bot);
  const admin = users.find((u) => emulator.state.isAdmin(guild.id, u.id));
  const member = users.find((u) => !emulator.state.isAdmin(guild.id, u.id));
  if (!general || !nsfw || !admin || !member) throw new Error('seed is missing a channel or user');
  return { guild, general, nsfw, admin, member };
}

export interface GatewayMessage {
  op: number;
  t?: string;
  s?: number;
  d?: unknown;
}

/**
 * Opens a raw gateway socket, runs `script` on every message it receives (HELLO first), and collects what comes back
 * until the socket closes. An op 9 Invalid Session closes it from this side (1000), as a client would reconnect.
 */
export function rawGatewaySession(
  emulator: DiscordEmulator,
  script: (send: (payload: unknown) => void, seen: GatewayMessage[], close: () => void) => void,
): Promise<{ code: number; seen: GatewayMessage[] }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${emulator.gatewayUrl}?v=10&encoding=json`);
    const seen: GatewayMessage[] = [];
    socket.on('message', (raw) => {
      const message = JSON.parse(String(raw)) as GatewayMessage;
      seen.push(message);
      script((payload) => socket.send(JSON.stringify(payload)), seen, () => socket.close(1000));
      if (message.op === 9) socket.close(1000);
    });
    socket.on('close', (code) => resolve({ code, seen }));
    socket.on('error', reject);
  });
}
