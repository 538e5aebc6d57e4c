/** The outbox's retry rules: which Discord failures are worth another try, and how long to wait before it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiscordAPIError, HTTPError } from 'discord.js';
import { backoffMs } from '../../src/discord/delivery.js';
import { isGoneError, isTransientDiscordError } from '../../src/discord/errors.js';

const apiError = (status: number, code: number) =>
  new DiscordAPIError({ code, message: 'x' }, code, status, 'PATCH', 'http://127.0.0.1/api/v10/webhooks/1/t/messages/@original', { body: undefined, files: undefined });

test('5xx and socket failures are transient; a 4xx answer is final', () => {
  assert.equal(isTransientDiscordError(new HTTPError(502, 'Bad Gateway', 'PATCH', 'http://x/', { body: undefined, files: undefined })), true);
  assert.equal(isTransientDiscordError(apiError(500, 0)), true);
  assert.equal(isTransientDiscordError(apiError(400, 50035)), false);
  assert.equal(isTransientDiscordError(apiError(404, 10008)), false);
  // As node and undici report a peer that closed a kept-alive connection: the code on the error or on its cause.
  const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
  assert.equal(isTransientDiscordError(epipe), true);
  assert.equal(isTransientDiscordError(new TypeError('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) })), true);
  assert.equal(isTransientDiscordError(new Error('something else')), false);
});

test('10008 and 10062 are races, not faults', () => {
  assert.equal(isGoneError(apiError(404, 10008)), true);
  assert.equal(isGoneError(apiError(404, 10062)), true);
  assert.equal(isGoneError(apiError(403, 50013)), false);
});

test('backoff doubles from 1 s with jitter, is capped at 5 minutes, and waits at least what Discord asked', () => {
  for (const [attempts, ceiling] of [[1, 1000], [2, 2000], [3, 4000], [12, 300_000]] as const) {
    for (let i = 0; i < 50; i += 1) {
      const delay = backoffMs(attempts);
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempts}: ${delay}`);
    }
  }
  assert.ok(backoffMs(1, 7000) >= 7000);
});
