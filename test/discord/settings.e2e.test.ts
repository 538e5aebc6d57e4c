/**
 * /imagine-settings and the rules it sets, end to end (issue 5), plus /imagine-status and /imagine-queue.
 * One bot process; each test resets the guild's settings at the end so the next starts from the defaults.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { buttonId, hasPngs, pngParameters, Sandbox } from './harness.js';

describe('/imagine-settings end to end', () => {
  let sb: Sandbox;

  const settings = (user: string, subcommand: string, options: Record<string, unknown> = {}) =>
    sb.ephemeralAnswer(sb.invoke({ user_id: user, name: 'imagine-settings', subcommand, options }));

  before(async () => {
    sb = await Sandbox.start();
  });
  afterEach(async () => {
    assert.match(await settings(sb.people.admin, 'reset'), /back to its default/);
  });
  after(async () => {
    await sb?.stop();
  });

  test('a member without Manage Server is refused, even when the command is let through', async () => {
    const { bruno, admin } = sb.people;
    assert.throws(() => sb.invoke({ user_id: bruno, name: 'imagine-settings', subcommand: 'show' }), /permission|not allowed|Manage/i);
    const id = sb.invoke({ user_id: bruno, name: 'imagine-settings', subcommand: 'rate-limit', options: { jobs: 1 }, bypass_permissions: true });
    const answer = await sb.ephemeralAnswer(id);
    assert.match(answer, /Manage Server/);
    assert.equal(sb.interaction(id).original?.ephemeral ?? true, true);
    // Nothing changed.
    assert.match(await settings(admin, 'show'), /\*\*Rate limit:\*\* 1000 job\(s\) per 1 minute\(s\)/);
  });

  test('an admin sets a rate limit; a member who hits it is told when to try again', async () => {
    const { admin, chloe } = sb.people;
    assert.match(await settings(admin, 'rate-limit', { jobs: 2, minutes: 10 }), /Saved\. \*\*Rate limit:\*\* 2 job\(s\) per 10 minute\(s\)/);
    for (let i = 0; i < 2; i++) await sb.waitForResult(sb.imagine(chloe, { prompt: `allowed ${i}` }));
    const refused = sb.imagine(chloe, { prompt: 'one too many' });
    const answer = await sb.ephemeralAnswer(refused);
    const retry = /<t:(\d+):R>/.exec(answer);
    assert.ok(retry, `the answer names a time: ${answer}`);
    const retryAt = Number(retry[1]);
    const now = Date.now() / 1000;
    assert.ok(retryAt > now + 8 * 60 && retryAt <= now + 10 * 60 + 5, `retry in about 10 minutes (${retryAt - now} s)`);
    assert.equal(sb.interaction(refused).original?.ephemeral ?? true, true, 'the refusal is ephemeral');
    assert.ok(!sb.channelMessages(sb.people.channelA).some((m) => m.interaction_id === refused), 'nothing public was left behind');
  });

  test('channel allow-list', async () => {
    const { admin, bruno, channelA, nsfwChannelA } = sb.people;
    assert.match(await settings(admin, 'channels', { action: 'add', channel: channelA }), new RegExp(`<#${channelA}>`));
    const elsewhere = sb.imagine(bruno, { prompt: 'in the wrong channel' }, { channel: nsfwChannelA });
    assert.match(await sb.ephemeralAnswer(elsewhere), new RegExp(`not enabled in this channel; use <#${channelA}>`));
    assert.ok(hasPngs((await sb.waitForResult(sb.imagine(bruno, { prompt: 'in the right channel' }))).original));
    assert.match(await settings(admin, 'channels', { action: 'clear' }), /everywhere/);
    assert.ok(hasPngs((await sb.waitForResult(sb.imagine(bruno, { prompt: 'anywhere again' }, { channel: nsfwChannelA }))).original));
  });

  test('blocklisted words and regexes are refused; a bad regex is explained', async () => {
    const { admin, chloe } = sb.people;
    await settings(admin, 'blocklist', { action: 'add', pattern: 'forbidden' });
    assert.match(await settings(admin, 'blocklist', { action: 'add', pattern: '/d[o0]+g/' }), /`forbidden`, `\/d\[o0\]\+g\/`/);
    assert.match(await sb.ephemeralAnswer(sb.imagine(chloe, { prompt: 'a Forbidden castle' })), /does not allow/);
    assert.match(await sb.ephemeralAnswer(sb.imagine(chloe, { prompt: 'a happy d00og' })), /does not allow/);
    assert.ok(hasPngs((await sb.waitForResult(sb.imagine(chloe, { prompt: 'a happy cat' }))).original));
    const bad = await settings(admin, 'blocklist', { action: 'add', pattern: '/(unclosed/' });
    assert.doesNotMatch(bad, /^Saved/);
    assert.ok(bad.length > 0 && !bad.includes('\n    at '), `one sentence, no stack trace: ${bad}`);
  });

  test('limits: too many steps are lowered with a note, a size off the list is refused, bad values are explained', async () => {
    const { admin, bruno } = sb.people;
    assert.match(await settings(admin, 'limits', { 'max-steps': 6, sizes: '64x64' }), /steps ≤ 6.*sizes 64×64/);
    const lowered = sb.imagine(bruno, { prompt: 'many steps', steps: 30 });
    const view = await sb.waitForResult(lowered);
    assert.match((await pngParameters(view.original!))[0]!, /Steps: 6,/);
    assert.ok(view.followups.some((f) => f.ephemeral && /Steps lowered from 30 to 6/.test(f.content)), 'the requester is told');
    assert.match(await sb.ephemeralAnswer(sb.imagine(bruno, { prompt: 'too big', size: '128x128' })), /Size 128x128 is not allowed here; choose one of 64x64/);
    const badSize = await settings(admin, 'limits', { sizes: '65x65' });
    assert.match(badSize, /"65x65" is not a size/);
    assert.match(await settings(admin, 'show'), /sizes 64×64\./, 'the refused change left the limits as they were');
  });

  test('a default negative prompt joins every job; the queue cap per user refuses with a clear sentence', async () => {
    const { admin, bruno, chloe } = sb.people;
    assert.match(await settings(admin, 'negative', { text: 'watermark' }), /`watermark`/);
    const view = await sb.waitForResult(sb.imagine(chloe, { prompt: 'a boat', negative: 'blurry' }));
    assert.equal((await pngParameters(view.original!))[0]!.split('\n')[1], 'Negative prompt: blurry, watermark');

    assert.match(await settings(admin, 'queue', { 'per-user': 1 }), /1 per user/);
    const long = sb.imagine(bruno, { prompt: 'takes a while', steps: 100, size: '128x128', count: 4 });
    const running = await sb.waitForInteraction(long, (v) => /Generating|Starting/.test(v.original?.content ?? ''));
    assert.match(await sb.ephemeralAnswer(sb.imagine(bruno, { prompt: 'one more' })), /You already have 1 job queued or running/);
    const cancel = sb.click(bruno, running.original!.id, buttonId(running.original!, 'cancel'));
    await sb.waitForInteraction(cancel, (v) => v.acked);
    await sb.waitForInteraction(long, (v) => (v.original?.content ?? '').includes('Cancelled'));
  });

  test("a server's default clip skip reaches the engine and the PNG; the member's clip-skip option overrides it", async () => {
    const { admin, bruno } = sb.people;
    assert.match(await settings(admin, 'show'), /\*\*Default clip skip:\*\* 1 /);
    assert.match(await settings(admin, 'clip-skip', { value: 2 }), /^Saved\. \*\*Default clip skip:\*\* 2 /);
    const byDefault = await sb.waitForResult(sb.imagine(bruno, { prompt: 'a lighthouse at dusk', seed: '5' }));
    assert.match((await pngParameters(byDefault.original!))[0]!, /, Clip skip: 2(,|$)/m);
    const overridden = await sb.waitForResult(sb.imagine(bruno, { prompt: 'a lighthouse at dusk', seed: '5', 'clip-skip': 1 }));
    assert.doesNotMatch((await pngParameters(overridden.original!))[0]!, /Clip skip/, 'clip skip 1: A1111 writes no field');
    // reset (afterEach) puts it back to the configured 1.
  });

  test('NSFW policy is set and shown', async () => {
    const { admin } = sb.people;
    assert.match(await settings(admin, 'nsfw', { policy: 'withhold', 'check-nsfw-channels': true }), /withheld; NSFW channels are checked too/);
    assert.match(await settings(admin, 'show'), /withheld; NSFW channels are checked too/);
  });

  test('/imagine-status and /imagine-queue answer ephemerally', async () => {
    const { bruno } = sb.people;
    const status = await sb.ephemeralAnswer(sb.invoke({ user_id: bruno, name: 'imagine-status' }));
    assert.match(status, /model tiny-sd on cpu/);
    assert.match(status, /queue \d+ waiting/);
    assert.match(status, /up \d/);
    const queue = await sb.ephemeralAnswer(sb.invoke({ user_id: bruno, name: 'imagine-queue' }));
    assert.match(queue, /Waiting: \d+ job\(s\) in this server/);
  });
});
