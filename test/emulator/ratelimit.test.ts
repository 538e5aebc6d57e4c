import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Client, Interaction, RateLimitData, TextChannel } from 'discord.js';
import { startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { connectClient, controlJson, firstGuild } from './helpers.js';

describe('rate limits: real headers, real 429s, injected 429s and 5xx', () => {
  let emulator: DiscordEmulator;
  let client: Client;
  let channel: TextChannel;
  const route = 'POST /channels/:channel_id/messages';

  before(async () => {
    // A tight limit on channel messages so the bucket test is quick; the rest keep the defaults.
    emulator = await startDiscordEmulator({ rateLimits: { [route]: { limit: 2, windowMs: 1000 } } });
    client = await connectClient(emulator);
    channel = client.channels.cache.get(firstGuild(emulator).general.id) as TextChannel;
  });
  after(async () => {
    await client?.destroy();
    await emulator?.stop();
  });

  const entriesFor = (template: string, method: string) => emulator.requestLog.filter((e) => e.route === template && e.method === method);

  it('every bot response carries X-RateLimit-* headers; exceeding a bucket gives 429 with retry_after', async () => {
    const headers = { Authorization: `Bot ${emulator.token}`, 'Content-Type': 'application/json' };
    const first = await fetch(`${emulator.apiBase}/v10/users/@me`, { headers });
    for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'x-ratelimit-reset-after', 'x-ratelimit-bucket']) {
      assert.ok(first.headers.get(name), `${name} is present`);
    }
    const url = `${emulator.apiBase}/v10/channels/${channel.id}/messages`;
    const statuses: number[] = [];
    let limited: Response | null = null;
    for (let i = 0; i < 3; i += 1) {
      const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ content: `raw ${i}` }) });
      statuses.push(response.status);
      if (response.status === 429) limited = response;
      else await response.arrayBuffer();
    }
    assert.deepEqual(statuses, [200, 200, 429]);
    assert.ok(limited);
    const body = (await limited.json()) as { retry_after: number; global: boolean; message: string };
    assert.equal(body.message, 'You are being rate limited.');
    assert.equal(body.global, false);
    assert.ok(body.retry_after > 0 && body.retry_after <= 1, `retry_after ${body.retry_after}`);
    assert.equal(limited.headers.get('x-ratelimit-remaining'), '0');
    assert.equal(limited.headers.get('x-ratelimit-scope'), 'user');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    // Wait the window out so the next test starts with a fresh bucket.
    await new Promise((resolve) => setTimeout(resolve, 1100));
  });

  it('discord.js reads the bucket headers and queues instead of hitting 429', async () => {
    const before = entriesFor('/channels/:channel_id/messages', 'POST').length;
    const started = Date.now();
    const sent = await Promise.all([1, 2, 3, 4, 5].map((n) => channel.send(`queued ${n}`)));
    const elapsed = Date.now() - started;
    assert.equal(sent.length, 5);
    const entries = entriesFor('/channels/:channel_id/messages', 'POST').slice(before);
    assert.deepEqual(entries.map((e) => e.status), [200, 200, 200, 200, 200], 'no 429: the client waited for the reset');
    // 5 messages at 2 per second need at least two bucket resets.
    assert.ok(elapsed >= 1500, `took ${elapsed} ms`);
  });

  it('a real discord.js client given an injected 429 waits retry_after and retries', async () => {
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const events: RateLimitData[] = [];
    const onRateLimited = (data: RateLimitData) => events.push(data);
    client.rest.on('rateLimited', onRateLimited);
    const { status } = await controlJson(emulator, 'POST', '/faults', { kind: 'rate_limit', route, count: 1, retry_after: 1.2 });
    assert.equal(status, 200);
    const before = entriesFor('/channels/:channel_id/messages', 'POST').length;
    const started = Date.now();
    const message = await channel.send('after a 429');
    const elapsed = Date.now() - started;
    client.rest.off('rateLimited', onRateLimited);
    const entries = entriesFor('/channels/:channel_id/messages', 'POST').slice(before);
    assert.deepEqual(entries.map((e) => e.status), [429, 200]);
    // discord.js waits for the bucket to reset (X-RateLimit-Reset-After = retry_after = 1.2 s) before retrying.
    assert.ok(elapsed >= 1150, `retried after ${elapsed} ms`);
    assert.equal(events.length, 1);
    assert.ok(events[0]!.retryAfter >= 1200, `rateLimited event retryAfter ${events[0]!.retryAfter}`);
    assert.equal(emulator.channelMessages(channel.id).filter((m) => m.id === message.id).length, 1, 'the message was created exactly once');
  });

  it('an injected 429 on the interaction callback is retried too (burst handler), within the 3 s deadline', async () => {
    const { guild, general, member } = firstGuild(emulator);
    await client.application!.commands.set([{ name: 'ping', description: 'ping' }]);
    await emulator.injectFault({ kind: 'rate_limit', route: '/interactions/:interaction_id/:token/callback', count: 1, retry_after: 0.5 });
    const received = new Promise<Interaction>((resolve) => client.once('interactionCreate', resolve));
    const { interaction_id } = emulator.invokeCommand({ user_id: member.id, guild_id: guild.id, channel_id: general.id, name: 'ping' });
    const interaction = await received;
    assert.ok(interaction.isChatInputCommand());
    await interaction.deferReply();
    const view = emulator.interaction(interaction_id);
    assert.equal(view?.acked, true);
    assert.deepEqual(entriesFor('/interactions/:interaction_id/:token/callback', 'POST').map((e) => e.status).slice(-2), [429, 204]);
  });

  it('an injected 5xx is retried by discord.js and the request then succeeds', async () => {
    await emulator.injectFault({ kind: 'server_error', route: 'GET /users/:user_id', count: 2, status: 502 });
    const { member } = firstGuild(emulator);
    const user = await client.users.fetch(member.id, { force: true });
    assert.equal(user.id, member.id);
    assert.deepEqual(entriesFor('/users/:user_id', 'GET').map((e) => e.status).slice(-3), [502, 502, 200]);
  });
});
