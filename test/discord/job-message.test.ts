/**
 * JobMessage's pacing and token rules, with discord.js's real REST client against a small recording HTTP server on
 * 127.0.0.1 that answers like Discord (including a dead interaction token).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { REST } from 'discord.js';
import { createLogger } from '../../src/log.js';
import { JobMessage, type ReplyTarget } from '../../src/discord/job-message.js';

interface Recorded {
  at: number;
  method: string;
  path: string;
  body: string;
}

describe('JobMessage', () => {
  let server: Server;
  let base: string;
  const calls: Recorded[] = [];
  /** Tokens the fake Discord treats as expired (50027). */
  const deadTokens = new Set<string>();
  let nextMessageId = 100;

  before(async () => {
    server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/api\/v10/, '');
        calls.push({ at: Date.now(), method: req.method ?? '', path, body: Buffer.concat(chunks).toString('latin1') });
        const token = /^\/webhooks\/\d+\/([^/]+)\//.exec(path)?.[1];
        res.setHeader('content-type', 'application/json');
        if (token && deadTokens.has(token)) {
          res.statusCode = 401;
          res.end(JSON.stringify({ message: 'Invalid Webhook Token', code: 50027 }));
          return;
        }
        res.end(JSON.stringify({ id: String(nextMessageId++), channel_id: '200000000000000001', content: '' }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const log = createLogger({ level: 'silent', destination: { write: () => undefined } });
  const rest = () => new REST({ api: base, version: '10', retries: 0 }).setToken('test-token-not-secret');
  const target = (token: string): ReplyTarget => ({
    applicationId: '300000000000000001',
    interactionToken: token,
    interactionAt: Date.now(),
    guildId: '400000000000000001',
    channelId: '200000000000000001',
    requesterId: '500000000000000001',
    replyMessageId: '600000000000000001',
  });

  test('coalesces rapid updates, keeps edits apart, sends the newest state and skips repeats', async () => {
    calls.length = 0;
    const message = new JobMessage(target('token-a'), { rest: rest(), log, minIntervalMs: 200 });
    for (let step = 1; step <= 20; step++) {
      message.update({ content: `step ${step}/20` });
      await new Promise((r) => setTimeout(r, 20));
    }
    await message.flush();
    message.update({ content: 'step 20/20' }); // the same as what is shown: no request
    await message.flush();
    const edits = calls.filter((c) => c.method === 'PATCH');
    assert.ok(edits.length >= 2 && edits.length <= 5, `20 updates in ~400 ms became ${edits.length} edits`);
    const gaps = edits.slice(1).map((e, i) => e.at - edits[i]!.at);
    assert.ok(gaps.every((gap) => gap >= 190), `edits are at least minIntervalMs apart: ${gaps.join(', ')}`);
    assert.deepEqual([...new Set(edits.map((e) => e.path))], ['/webhooks/300000000000000001/token-a/messages/@original']);
    assert.match(edits.at(-1)!.body, /step 20\/20/);
  });

  test('a dead token moves the job to a channel message that replies to the requester and links from the old reply', async () => {
    calls.length = 0;
    deadTokens.add('token-b');
    let saved: ReplyTarget | undefined;
    const message = new JobMessage(target('token-b'), { rest: rest(), log, minIntervalMs: 50, onTargetChange: (t) => void (saved = t) });
    await message.finish({ content: 'Done' }, { announce: true });
    const [tried, posted, pointed] = calls;
    assert.equal(tried?.method, 'PATCH');
    assert.equal(posted?.method, 'POST');
    assert.equal(posted?.path, '/channels/200000000000000001/messages');
    assert.match(posted!.body, /<@500000000000000001> Done/);
    assert.match(posted!.body, /"message_reference":\{"message_id":"600000000000000001"/);
    assert.equal(pointed?.method, 'PATCH');
    assert.equal(pointed?.path, '/channels/200000000000000001/messages/600000000000000001');
    assert.match(pointed!.body, /discord\.com\/channels\/400000000000000001\/200000000000000001\/\d+/);
    assert.equal(saved?.tokenExpired, true);
    assert.ok(saved?.channelMessageId, 'the new message id is persisted');
  });

  test('a token near its 15 minutes is not used at all', async () => {
    calls.length = 0;
    const old = { ...target('token-c'), interactionAt: Date.now() - 14.5 * 60_000 };
    const message = new JobMessage(old, { rest: rest(), log, minIntervalMs: 50 });
    message.update({ content: 'Queued — position 2' });
    await message.flush();
    assert.deepEqual(calls.map((c) => `${c.method} ${c.path}`).slice(0, 1), ['POST /channels/200000000000000001/messages']);
    // Later states edit that channel message instead of posting new ones.
    calls.length = 0;
    message.update({ content: 'Queued — position 1' });
    await message.flush();
    assert.deepEqual(calls.map((c) => `${c.method} ${c.path.replace(/\d+$/, 'ID')}`), ['PATCH /channels/200000000000000001/messages/ID']);
  });
});
