import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SlashCommandBuilder, type Client } from 'discord.js';
import { DEFAULT_SEED, seedWithShards, startDiscordEmulator, type DiscordEmulator, type SandboxState } from '../../src/emulator/index.js';
import { connectClient, controlJson, rawGatewaySession, type GatewayMessage } from './helpers.js';

// Discord's sharding (Gateway → Sharding): a session IDENTIFYs as [shard_id, num_shards] and gets only the events of
// guilds with (guild_id >> 22) % num_shards === shard_id; guild-less events go to shard 0. The expected shard of a
// guild is computed here from the id itself, independently of the emulator's code.
const shardOfId = (guildId: string, count: number) => Number((BigInt(guildId) >> 22n) % BigInt(count));

interface GatewayBot {
  url: string;
  shards: number;
  session_start_limit: { total: number; remaining: number; reset_after: number; max_concurrency: number };
}
async function gatewayBot(emulator: DiscordEmulator): Promise<GatewayBot> {
  const response = await fetch(`${emulator.apiBase}/v10/gateway/bot`, { headers: { Authorization: `Bot ${emulator.token}` } });
  assert.equal(response.status, 200);
  return (await response.json()) as GatewayBot;
}

/** IDENTIFYs on a raw socket; closes (1000) once READY and its GUILD_CREATEs arrived. Resolves with what came back. */
function identify(emulator: DiscordEmulator, fields: Record<string, unknown> = {}) {
  return rawGatewaySession(emulator, (send, seen, close) => {
    if (seen.length === 1) send({ op: 2, d: { token: emulator.token, intents: 1, properties: {}, ...fields } });
    const ready = seen.find((m) => m.t === 'READY');
    const expected = (ready?.d as { guilds?: unknown[] } | undefined)?.guilds?.length;
    if (expected !== undefined && seen.filter((m) => m.t === 'GUILD_CREATE').length === expected) close();
  });
}
const readyOf = (seen: GatewayMessage[]) => seen.find((m) => m.t === 'READY')?.d as { session_id: string; shard: [number, number]; guilds: { id: string }[] } | undefined;

describe('sharding: a world spread over 3 shards, one discord.js client per shard', () => {
  let emulator: DiscordEmulator;
  const clients: Client[] = [];
  /** Every dispatch each shard's client received, by shard id. */
  const received: GatewayMessage[][] = [[], [], []];

  before(async () => {
    emulator = await startDiscordEmulator({ seed: seedWithShards(DEFAULT_SEED, 3) });
  });
  after(async () => {
    for (const client of clients) await client.destroy();
    await emulator?.stop();
  });

  it('the seeded world has guilds on every shard, and GET /gateway/bot recommends 3 shards with a fresh start budget', async () => {
    const guildIds = [...emulator.state.guilds.keys()];
    assert.equal(guildIds.length, 3);
    assert.deepEqual(guildIds.map((id) => shardOfId(id, 3)).sort(), [0, 1, 2]);
    for (const id of guildIds) assert.match(id, /^\d{17,20}$/);
    // Moved onto their shards, the guild ids still collide with no other id of the world.
    const allIds = [
      ...emulator.state.users.keys(),
      ...guildIds,
      ...[...emulator.state.guilds.values()].flatMap((g) => [...g.roles.filter((r) => r.id !== g.id).map((r) => r.id), ...g.channels.map((c) => c.id)]),
    ];
    assert.equal(new Set(allIds).size, allIds.length);
    const info = await gatewayBot(emulator);
    assert.equal(info.url, emulator.gatewayUrl);
    assert.equal(info.shards, 3);
    assert.deepEqual(info.session_start_limit, { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 });
    const { data: state } = await controlJson<SandboxState>(emulator, 'GET', '/state');
    assert.deepEqual(
      state.shards,
      [0, 1, 2].map((id) => ({ id, connected: false, guild_ids: guildIds.filter((g) => shardOfId(g, 3) === id) })),
    );
  });

  it('each shard gets READY and GUILD_CREATE for its own guilds only; the bot is ready when all 3 are', async () => {
    let botReady = false;
    const waiting = emulator.waitForBotReady({ afterCount: emulator.botReadyCount, timeoutMs: 30_000 }).then(() => (botReady = true));
    for (const shard of [0, 1, 2]) {
      // Let any pending readiness settle before looking: only the last shard may complete it.
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(botReady, false, `not ready with ${shard} of 3 shards connected`);
      const client = await connectClient(emulator, { shards: [shard], shardCount: 3 });
      client.on('raw', (packet: GatewayMessage) => received[shard]?.push(packet));
      clients.push(client);
    }
    await waiting;
    assert.equal(emulator.allShardsConnected(), true);
    clients.forEach((client, shard) => {
      const expected = [...emulator.state.guilds.keys()].filter((id) => shardOfId(id, 3) === shard);
      assert.deepEqual([...client.guilds.cache.keys()], expected, `shard ${shard}'s guilds`);
      assert.ok(client.guilds.cache.every((g) => g.available && g.shardId === shard));
    });
    const sessions = [...emulator.gateway.sessions.values()].map((s) => s.shard).sort((a, b) => a[0] - b[0]);
    assert.deepEqual(sessions, [[0, 3], [1, 3], [2, 3]]);
    const { data: state } = await controlJson<SandboxState>(emulator, 'GET', '/state');
    assert.deepEqual(state.shards.map((s) => s.connected), [true, true, true]);
    assert.equal((await gatewayBot(emulator)).session_start_limit.remaining, 997, 'three IDENTIFYs spent three session starts');
  });

  it('INTERACTION_CREATE and MESSAGE_CREATE reach only the shard of their guild; guild-less events go to shard 0', async () => {
    const imagine = new SlashCommandBuilder().setName('imagine').setDescription('Draw').addStringOption((o) => o.setName('prompt').setDescription('What').setRequired(true));
    await clients[0]!.application!.commands.set([imagine.toJSON()]);
    clients.forEach((client, shard) => {
      client.on('interactionCreate', (interaction) => {
        if (interaction.isChatInputCommand()) void interaction.reply(`shard ${shard} drew ${interaction.options.getString('prompt')}`);
      });
    });
    const user = [...emulator.state.users.values()].find((u) => u.username === 'bruno')!;
    for (const guild of emulator.state.guilds.values()) {
      const shard = shardOfId(guild.id, 3);
      const channel = guild.channels.find((c) => !c.nsfw)!;
      received.forEach((events) => (events.length = 0));
      const { interaction_id, delivered } = emulator.invokeCommand({ user_id: user.id, guild_id: guild.id, channel_id: channel.id, name: 'imagine', options: { prompt: guild.name } });
      assert.equal(delivered, true);
      const view = await emulator.waitForInteraction(interaction_id, (v) => v.acked === true, 10_000);
      assert.equal((view.original as { content: string }).content, `shard ${shard} drew ${guild.name}`);
      await emulator.waitFor(() => (received[shard]!.some((p) => p.t === 'MESSAGE_CREATE') ? true : null), 10_000, 'MESSAGE_CREATE on the guild\'s shard');
      received.forEach((events, other) => {
        const types = events.map((p) => p.t);
        if (other === shard) assert.ok(types.includes('INTERACTION_CREATE') && types.includes('MESSAGE_CREATE'), `shard ${shard} got ${types.join()}`);
        else assert.deepEqual(types.filter((t) => t === 'INTERACTION_CREATE' || t === 'MESSAGE_CREATE'), [], `shard ${other} got nothing of guild ${guild.name}`);
      });
    }
    // Events about a guild itself carry it as `id`: GUILD_UPDATE of the shard-2 guild goes to shard 2 only.
    const onShard2 = [...emulator.state.guilds.values()].find((g) => shardOfId(g.id, 3) === 2)!;
    received.forEach((events) => (events.length = 0));
    assert.equal(emulator.gateway.dispatch('GUILD_UPDATE', { id: onShard2.id, name: onShard2.name, owner_id: onShard2.ownerId }), 1);
    await emulator.waitFor(() => (received[2]!.some((p) => p.t === 'GUILD_UPDATE') ? true : null), 10_000, 'GUILD_UPDATE on shard 2');
    assert.deepEqual([received[0]!.length, received[1]!.length], [0, 0]);
    // A DM-like event carries no guild_id: only shard 0 gets it.
    received.forEach((events) => (events.length = 0));
    assert.equal(emulator.gateway.dispatch('CHANNEL_PINS_UPDATE', { channel_id: '1', last_pin_timestamp: null }), 1);
    await emulator.waitFor(() => (received[0]!.some((p) => p.t === 'CHANNEL_PINS_UPDATE') ? true : null), 10_000, 'the guild-less event on shard 0');
    assert.deepEqual([received[1]!.length, received[2]!.length], [0, 0]);
  });
});

describe('sharding: invalid shards (4010) and sharding required (4011)', () => {
  let emulator: DiscordEmulator;
  before(async () => {
    // Two guilds, one per shard of 2, and at most one guild per session; max_concurrency 2 lets discord.js identify
    // both of its shards at once.
    const seed = seedWithShards(DEFAULT_SEED, 2);
    emulator = await startDiscordEmulator({ seed: { ...seed, gateway: { ...seed.gateway, max_guilds_per_session: 1, max_concurrency: 2 } } });
  });
  after(async () => {
    await emulator?.stop();
  });

  it('IDENTIFY with a shard id ≥ num_shards, num_shards 0, a negative id or a malformed array is closed with 4010', async () => {
    for (const shard of [[2, 2], [0, 0], [-1, 2], [1], [0, '2'], 'zero']) {
      const { code, seen } = await identify(emulator, { shard });
      assert.equal(code, 4010, `shard ${JSON.stringify(shard)}`);
      assert.equal(readyOf(seen), undefined);
    }
    assert.equal((await gatewayBot(emulator)).session_start_limit.remaining, 1000, 'refused IDENTIFYs start no session');
  });

  it('a session that would hold more guilds than allowed is closed with 4011; sharded sessions within it connect', async () => {
    const unsharded = await identify(emulator);
    assert.equal(unsharded.code, 4011);
    assert.equal(readyOf(unsharded.seen), undefined);
    for (const shard of [0, 1]) {
      const { code, seen } = await identify(emulator, { shard: [shard, 2] });
      assert.equal(code, 1000);
      const ready = readyOf(seen);
      assert.deepEqual(ready?.shard, [shard, 2]);
      assert.deepEqual(ready?.guilds.map((g) => g.id), [...emulator.state.guilds.keys()].filter((id) => shardOfId(id, 2) === shard));
      assert.equal(seen.filter((m) => m.t === 'GUILD_CREATE').length, 1);
    }
  });

  it('discord.js connects with 2 shards where one unsharded session is refused', async () => {
    const client = await connectClient(emulator, { shards: [0, 1], shardCount: 2 });
    try {
      assert.equal(client.guilds.cache.size, 2);
      assert.deepEqual(client.guilds.cache.map((g) => g.shardId).sort(), [0, 1]);
    } finally {
      await client.destroy();
    }
  });
});

describe('sharding: session_start_limit and identify buckets', () => {
  let emulator: DiscordEmulator;
  before(async () => {
    const seed = seedWithShards(DEFAULT_SEED, 2);
    emulator = await startDiscordEmulator({ seed: { ...seed, gateway: { ...seed.gateway, max_concurrency: 2, session_start_limit: 4 } }, identifyIntervalMs: 5000 });
  });
  after(async () => {
    await emulator?.stop();
  });

  it('each IDENTIFY spends a start; a second IDENTIFY in the same bucket (shard_id % max_concurrency) within 5 s gets op 9', async () => {
    assert.deepEqual((await gatewayBot(emulator)).session_start_limit, { total: 4, remaining: 4, reset_after: 0, max_concurrency: 2 });
    const first = await identify(emulator, { shard: [0, 2] });
    assert.deepEqual(readyOf(first.seen)?.shard, [0, 2]);
    // Bucket 1 is independent of bucket 0: shard 1 may start at once.
    const second = await identify(emulator, { shard: [1, 2] });
    assert.deepEqual(readyOf(second.seen)?.shard, [1, 2]);
    const limit = (await gatewayBot(emulator)).session_start_limit;
    assert.equal(limit.remaining, 2);
    assert.ok(limit.reset_after > 86_000_000 && limit.reset_after <= 86_400_000, `reset_after ${limit.reset_after} counts down from 24 h`);
    // Shard 2 of 4 is in bucket 0 too (2 % 2): too soon after shard 0.
    const tooSoon = await identify(emulator, { shard: [2, 4] });
    assert.deepEqual(tooSoon.seen.at(-1), { op: 9, d: false });
    assert.equal(readyOf(tooSoon.seen), undefined);
    assert.equal((await gatewayBot(emulator)).session_start_limit.remaining, 2, 'a refused IDENTIFY spends nothing');
    await controlJson(emulator, 'POST', '/faults', { kind: 'advance_clock', seconds: 5 });
    const later = await identify(emulator, { shard: [2, 4] });
    assert.deepEqual(readyOf(later.seen)?.shard, [2, 4]);
    assert.equal((await gatewayBot(emulator)).session_start_limit.remaining, 1);
  });

  it('RESUME spends no start; when the budget is spent, IDENTIFY is refused with 4004 and every session ends', async () => {
    const started = await identify(emulator, { shard: [1, 2] });
    const ready = readyOf(started.seen);
    assert.ok(ready);
    const resumed = await rawGatewaySession(emulator, (send, seen, close) => {
      if (seen.length === 1) send({ op: 6, d: { token: emulator.token, session_id: ready.session_id, seq: 1 } });
      if (seen.some((m) => m.t === 'RESUMED')) close();
    });
    assert.ok(resumed.seen.some((m) => m.t === 'RESUMED'));
    assert.equal((await gatewayBot(emulator)).session_start_limit.remaining, 0);
    await controlJson(emulator, 'POST', '/faults', { kind: 'advance_clock', seconds: 5 });
    const refused = await identify(emulator, { shard: [0, 2] });
    assert.equal(refused.code, 4004);
    assert.equal(emulator.gateway.sessions.size, 0, 'no session can be resumed after the limit was hit');
    // The budget comes back when reset_after has passed.
    await controlJson(emulator, 'POST', '/faults', { kind: 'advance_clock', seconds: 24 * 60 * 60 });
    assert.deepEqual((await gatewayBot(emulator)).session_start_limit, { total: 4, remaining: 4, reset_after: 0, max_concurrency: 2 });
    assert.equal((await identify(emulator, { shard: [0, 2] })).code, 1000);
  });
});

describe('sharding: one shard resumes while the other keeps running', () => {
  let emulator: DiscordEmulator;
  let client: Client;
  before(async () => {
    // max_concurrency 2: discord.js identifies both shards at once (its throttler reads it from GET /gateway/bot).
    const seed = seedWithShards(DEFAULT_SEED, 2);
    emulator = await startDiscordEmulator({ seed: { ...seed, gateway: { ...seed.gateway, max_concurrency: 2 } }, identifyIntervalMs: 5000 });
    client = await connectClient(emulator, { shards: 'auto' });
    const imagine = new SlashCommandBuilder().setName('imagine').setDescription('Draw').addStringOption((o) => o.setName('prompt').setDescription('What').setRequired(true));
    await client.application!.commands.set([imagine.toJSON()]);
    client.on('interactionCreate', (interaction) => {
      if (interaction.isChatInputCommand()) void interaction.reply(`shard ${interaction.guild?.shardId} drew ${interaction.options.getString('prompt')}`);
    });
  });
  after(async () => {
    await client?.destroy();
    await emulator?.stop();
  });

  it('a dropped shard 1 resumes its own session and gets what was dispatched meanwhile; shard 0 stays connected and served', async () => {
    assert.equal(client.ws.shards.size, 2, 'shards: "auto" followed the recommendation');
    const sessions = () => [...emulator.gateway.sessions.values()];
    const shard0 = sessions().find((s) => s.shard[0] === 0)!;
    const shard1 = sessions().find((s) => s.shard[0] === 1)!;
    const shard0Socket = shard0.socket;
    const disconnects: number[] = [];
    client.on('shardDisconnect', (_event, id) => disconnects.push(id));
    const resumed = new Promise<number>((resolve) => client.once('shardResume', (id) => resolve(id)));
    const startsBefore = (await gatewayBot(emulator)).session_start_limit.remaining;

    const { data } = await controlJson<{ dropped: number }>(emulator, 'POST', '/faults', { kind: 'gateway_drop', shard: 1 });
    assert.equal(data.dropped, 1);
    const user = [...emulator.state.users.values()].find((u) => u.username === 'chloe')!;
    const invoke = (shard: number) => {
      const guild = [...emulator.state.guilds.values()].find((g) => shardOfId(g.id, 2) === shard)!;
      return emulator.invokeCommand({ user_id: user.id, guild_id: guild.id, channel_id: guild.channels[0]!.id, name: 'imagine', options: { prompt: `on ${shard}` } });
    };
    const onShard1 = invoke(1); // buffered for the dropped session
    const onShard0 = invoke(0); // delivered at once on the live one
    const answer0 = await emulator.waitForInteraction(onShard0.interaction_id, (v) => v.acked === true, 10_000);
    assert.equal((answer0.original as { content: string }).content, 'shard 0 drew on 0');

    assert.equal(await resumed, 1);
    const answer1 = await emulator.waitForInteraction(onShard1.interaction_id, (v) => v.acked === true, 10_000);
    assert.equal((answer1.original as { content: string }).content, 'shard 1 drew on 1');
    assert.ok(!disconnects.includes(0), 'shard 0 never disconnected');
    assert.equal(shard0.socket, shard0Socket, 'shard 0 kept its connection');
    assert.deepEqual(sessions().map((s) => s.id).sort(), [shard0.id, shard1.id].sort(), 'shard 1 resumed its session, no new IDENTIFY');
    assert.equal((await gatewayBot(emulator)).session_start_limit.remaining, startsBefore);
    const { data: state } = await controlJson<SandboxState>(emulator, 'GET', '/state');
    assert.deepEqual(state.shards.map((s) => [s.id, s.connected]), [[0, true], [1, true]]);
  });

  it('gateway_close with a shard closes only that shard (4000 → discord.js resumes it)', async () => {
    const resumed = new Promise<number>((resolve) => client.once('shardResume', (id) => resolve(id)));
    const { data } = await controlJson<{ closed: boolean }>(emulator, 'POST', '/faults', { kind: 'gateway_close', code: 4000, shard: 0 });
    assert.equal(data.closed, true);
    assert.equal(await resumed, 0);
    assert.equal(emulator.gateway.liveSessions().length, 2);
    const refused = await controlJson<{ error: string }>(emulator, 'POST', '/faults', { kind: 'gateway_close', shard: -1 });
    assert.equal(refused.status, 400);
  });
});
