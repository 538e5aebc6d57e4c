/**
 * Errors that are what they are: Discord's races (10008 Unknown Message, 10062 Unknown interaction) are user-level
 * outcomes, not internal errors; a dropped Discord call is logged with its route; gateway reconnects are logged.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buttonId, ephemeralText, Sandbox, waitUntil } from './harness.js';

describe('errors that are what they are', () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start();
  });
  after(async () => {
    await sb?.stop();
  });

  const internalErrors = (from: number) => sb.logs.slice(from).filter((l) => l.msg === 'interaction failed' || l.level >= 50);

  test('a second Delete click on the same message is told it is gone, not "something went wrong"', async () => {
    const { bruno } = sb.people;
    const done = await sb.waitForResult(sb.imagine(bruno, { prompt: 'deleted twice', steps: 4 }));
    const message = done.original!;
    const before = sb.logs.length;
    // Both clicks reach the bot before either deletion is done.
    const first = sb.click(bruno, message.id, buttonId(message, 'delete'));
    const second = sb.click(bruno, message.id, buttonId(message, 'delete'));
    // One of them deletes the message; the other finds it gone and is told so, privately.
    const refusal = await waitUntil(() => ephemeralText(sb.interaction(second)) ?? ephemeralText(sb.interaction(first)), 20_000, 'the answer to the second click');
    assert.match(refusal, /already deleted|no longer exists/);
    assert.doesNotMatch(refusal, /went wrong/);
    assert.deepEqual(internalErrors(before), [], 'no internal error was logged');
  });

  test('a 500 on a follow-up note is logged once with its route', async () => {
    const { admin, chloe } = sb.people;
    assert.match(await sb.ephemeralAnswer(sb.invoke({ user_id: admin, name: 'imagine-settings', subcommand: 'limits', options: { 'max-steps': 9 } })), /steps ≤ 9/);
    // discord.js tries a 5xx 4 times; all of them fail.
    await sb.emulator.injectFault({ kind: 'server_error', route: 'POST /webhooks/:application_id/:token', count: 4 });
    const before = sb.logs.length;
    await sb.waitForResult(sb.imagine(chloe, { prompt: 'lowered steps', steps: 30 }));
    const dropped = await sb.waitForLog((l) => l.msg === 'could not send a follow-up note', { after: before, timeoutMs: 20_000 });
    assert.equal(dropped['route'], 'POST /webhooks/:application_id/:token');
    assert.equal((dropped['err'] as { status?: number }).status, 500);
    assert.equal(sb.logs.slice(before).filter((l) => l.msg === 'could not send a follow-up note').length, 1);
    await sb.ephemeralAnswer(sb.invoke({ user_id: admin, name: 'imagine-settings', subcommand: 'reset' }));
  });

  test('gateway reconnects are logged', async () => {
    const before = sb.logs.length;
    await sb.emulator.injectFault({ kind: 'gateway_reconnect' });
    await sb.waitForLog((l) => l.msg === 'gateway reconnecting', { after: before, timeoutMs: 20_000 });
    await sb.waitForLog((l) => l.msg === 'gateway session resumed', { after: before, timeoutMs: 20_000 });
  });

  test('an interaction that expired before the bot acknowledged it (10062) is not an internal error', async () => {
    const { bruno } = sb.people;
    const before = sb.logs.length;
    const id = sb.imagine(bruno, { prompt: 'too late', steps: 4 });
    // Discord's 3 s pass before the bot's deferral arrives.
    await sb.emulator.injectFault({ kind: 'advance_clock', seconds: 5 });
    const gone = await sb.waitForLog((l) => l.msg === 'interaction target gone' && l['interactionId'] === id, { after: before, timeoutMs: 20_000 });
    assert.equal((gone['err'] as { code?: number }).code, 10062);
    assert.deepEqual(internalErrors(before), []);
    assert.ok(!sb.logs.slice(before).some((l) => l.msg === 'job queued'), 'nothing was queued for it');
  });
});
