import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from 'discord.js';
import WebSocket from 'ws';
import { startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { connectClient } from './helpers.js';

// With a short heartbeat interval: discord.js keeps its connection by heartbeating; a silent client is closed 4009.
// The timeout factor is generous (3 intervals) so a loaded machine's event-loop lag cannot close discord.js.
describe('gateway heartbeats', () => {
  let emulator: DiscordEmulator;
  let client: Client;

  before(async () => {
    emulator = await startDiscordEmulator({ heartbeatIntervalMs: 1000, heartbeatTimeoutFactor: 3 });
    client = await connectClient(emulator);
  });
  after(async () => {
    await client?.destroy();
    await emulator?.stop();
  });

  it('discord.js heartbeats, gets ACKs and stays on one connection', async () => {
    let closed = 0;
    client.on('shardDisconnect', () => (closed += 1));
    client.on('shardResume', () => (closed += 1));
    await new Promise((resolve) => setTimeout(resolve, 3500));
    assert.equal(closed, 0);
    assert.ok(client.ws.ping >= 0, `a heartbeat round trip was measured (ping ${client.ws.ping})`);
    assert.equal(emulator.gateway.liveSessions().length, 1);
  });

  it('a client that stops heartbeating is closed with 4009 Session timed out', async () => {
    const code = await new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(`${emulator.gatewayUrl}?v=10&encoding=json`);
      socket.on('message', (raw) => {
        const message = JSON.parse(String(raw)) as { op: number };
        if (message.op === 10) socket.send(JSON.stringify({ op: 2, d: { token: emulator.token, intents: 1, properties: {} } }));
      });
      socket.on('close', (closeCode) => resolve(closeCode));
      socket.on('error', reject);
    });
    assert.equal(code, 4009);
  });
});
