// Admission on real storage (SQLite file and real Redis) in front of a real LocalJobQueue: allow-list, blocklist,
// limits, queue limits, and rate limits (window, cooldown, daily quota, exempt roles) that hold across restarts.
import assert from 'node:assert/strict';
import { describeNeeding } from '../helpers/needs.js';
import { Admission, type AdmissionContext } from '../../src/queue/admission.js';
import {
  BlockedPromptError,
  ChannelNotAllowedError,
  QueueFullError,
  RateLimitedError,
  RequestLimitError,
} from '../../src/queue/errors.js';
import { FALLBACK_GUILD_SETTINGS, GuildSettingsStore } from '../../src/queue/settings.js';
import type { Storage } from '../../src/queue/storage.js';
import { backends, type BackendInstance } from './helpers/backends.js';
import { StepGenerator } from './helpers/generator.js';
import { captureLogs } from './helpers/log-capture.js';
import { createQueue, params } from './helpers/queue-harness.js';

const GUILD = '1000';
const NOON = Date.UTC(2026, 0, 15, 12, 0, 0);

interface Clock {
  now: number;
}

/** One "process": storage, settings, a started queue and admission on the backend. */
async function boot(instance: BackendInstance, clock: Clock, generator = new StepGenerator()) {
  const storage: Storage = instance.open();
  const { logger, lines } = captureLogs();
  const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: FALLBACK_GUILD_SETTINGS, logger });
  const h = createQueue(storage, generator);
  await h.queue.start();
  const admission = new Admission({ settings, usage: storage.namespace('usage'), queue: h.queue, logger, clock: () => clock.now });
  return { settings, queue: h.queue, admission, lines, generator };
}

function ctx(userId: string, extra: Partial<AdmissionContext> = {}): AdmissionContext {
  return { guildId: GUILD, channelId: '500', userId, roleIds: [], ...extra };
}

async function refusal<T extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${type.name}, but the request was admitted`);
}

for (const backend of backends) {
  describeNeeding(`admission on ${backend.name}`, backend.skip, ({ test }) => {
    test('rate limit: N jobs per window, with the retry time, still enforced after a restart', async () => {
      const instance = await backend.create();
      try {
        const clock = { now: NOON };
        const p1 = await boot(instance, clock);
        await p1.settings.update(GUILD, { rateLimit: { jobs: 2, minutes: 10 }, queue: { maxPerUser: 0, maxPerGuild: 0 } }, 'admin');
        await p1.admission.submit(params('one'), ctx('u1'));
        clock.now += 60_000;
        await p1.admission.submit(params('two'), ctx('u1'));
        clock.now += 60_000;
        const error = await refusal(p1.admission.submit(params('three'), ctx('u1')), RateLimitedError);
        const expected = (NOON + 10 * 60_000) / 1000; // the first job leaves the window then
        assert.equal(error.kind, 'window');
        assert.equal(error.retryAt, expected);
        assert.equal(error.code, 'rate_limited');
        assert.equal(error.message, `You can start 2 jobs every 10 minutes here; try again <t:${expected}:R>.`);
        // Another user is not affected.
        await p1.admission.submit(params('other'), ctx('u2'));
        await p1.queue.close();

        // A new process on the same storage still knows.
        const p2 = await boot(instance, clock);
        const again = await refusal(p2.admission.submit(params('three'), ctx('u1')), RateLimitedError);
        assert.equal(again.retryAt, expected);
        assert.deepEqual(await p2.admission.usageOf(GUILD, 'u1'), { inWindow: 2, windowLimit: 2, today: 2, dailyLimit: 0 });
        clock.now = expected * 1000;
        await p2.admission.submit(params('three'), ctx('u1'));
        await p2.queue.idle();
        await p2.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('cooldown between jobs', async () => {
      const instance = await backend.create();
      try {
        const clock = { now: NOON };
        const p = await boot(instance, clock);
        await p.settings.update(GUILD, { rateLimit: { cooldownSeconds: 30 } }, 'admin');
        await p.admission.submit(params('one'), ctx('u1'));
        clock.now += 10_000;
        const error = await refusal(p.admission.submit(params('two'), ctx('u1')), RateLimitedError);
        assert.equal(error.kind, 'cooldown');
        assert.equal(error.retryAt, NOON / 1000 + 30);
        assert.match(error.message, new RegExp(`^Please wait 30 seconds between jobs; try again <t:${NOON / 1000 + 30}:R>\\.$`));
        clock.now = NOON + 30_000;
        await p.queue.idle();
        await p.admission.submit(params('two'), ctx('u1'));
        await p.queue.idle();
        await p.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('daily quota resets at midnight UTC; when several limits block, the latest retry time is given', async () => {
      const instance = await backend.create();
      try {
        const lateEvening = Date.UTC(2026, 0, 15, 23, 0, 0);
        const midnight = Date.UTC(2026, 0, 16, 0, 0, 0) / 1000;
        const clock = { now: lateEvening };
        const p = await boot(instance, clock);
        await p.settings.update(GUILD, { rateLimit: { daily: 3, cooldownSeconds: 60 }, queue: { maxPerUser: 0 } }, 'admin');
        for (const prompt of ['a', 'b', 'c']) {
          await p.admission.submit(params(prompt), ctx('u1'));
          clock.now += 5 * 60_000;
        }
        const daily = await refusal(p.admission.submit(params('d'), ctx('u1')), RateLimitedError);
        assert.equal(daily.kind, 'daily');
        assert.equal(daily.retryAt, midnight);
        assert.equal(daily.message, `You have used today's 3 jobs; the quota resets <t:${midnight}:R>.`);
        // Just before midnight both the cooldown (ends 00:00:30) and the quota (ends 00:00:00) block: the later one
        // is what the user must wait for.
        clock.now = midnight * 1000 - 30_000;
        await p.admission.submit(params('probe'), ctx('u2'));
        clock.now = midnight * 1000 - 20_000;
        await p.settings.update(GUILD, { rateLimit: { daily: 1 } }, 'admin');
        const both = await refusal(p.admission.submit(params('e'), ctx('u2')), RateLimitedError);
        assert.equal(both.kind, 'cooldown');
        assert.equal(both.retryAt, midnight + 30);
        clock.now = midnight * 1000 + 1000;
        await p.admission.submit(params('next day'), ctx('u1'));
        await p.queue.idle();
        await p.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('exempt roles skip rate limits, nobody else does', async () => {
      const instance = await backend.create();
      try {
        const clock = { now: NOON };
        const p = await boot(instance, clock);
        await p.settings.update(GUILD, { rateLimit: { jobs: 1, minutes: 60, daily: 1 }, exemptRoles: ['900'], queue: { maxPerUser: 0 } }, 'admin');
        for (let i = 0; i < 3; i++) await p.admission.submit(params(`vip ${i}`), ctx('vip', { roleIds: ['800', '900'] }));
        await p.admission.submit(params('first'), ctx('pleb', { roleIds: ['800'] }));
        await refusal(p.admission.submit(params('second'), ctx('pleb', { roleIds: ['800'] })), RateLimitedError);
        await p.queue.idle();
        await p.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('blocklist refuses prompts (words and regexes), not negative prompts', async () => {
      const instance = await backend.create();
      try {
        const clock = { now: NOON };
        const p = await boot(instance, clock);
        await p.settings.update(GUILD, { blocklist: ['gore', '/n[uo]de\\w*/'] }, 'admin');
        const word = await refusal(p.admission.submit(params('a GORE scene'), ctx('u1')), BlockedPromptError);
        assert.equal(word.entry, 'gore');
        assert.equal(word.message, 'Your prompt contains "gore", which this server does not allow.');
        const regex = await refusal(p.admission.submit(params('a nudes study'), ctx('u1')), BlockedPromptError);
        assert.equal(regex.entry, '/n[uo]de\\w*/');
        await p.admission.submit(params('a gorgeous view', { negative: 'nude, gore' }), ctx('u1'));
        // A catastrophic pattern never gets in.
        await assert.rejects(p.settings.editList(GUILD, 'blocklist', 'add', '/(x+x+)+y/', 'admin'), /Nested repetition/);
        assert.ok(p.lines.some((l) => l.msg === 'prompt refused by the blocklist' && l.entry === 'gore'));
        await p.queue.idle();
        await p.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('channel allow-list, including threads of an allowed channel', async () => {
      const instance = await backend.create();
      try {
        const clock = { now: NOON };
        const p = await boot(instance, clock);
        await p.admission.submit(params('anywhere'), ctx('u1', { channelId: '222' }));
        await p.settings.editList(GUILD, 'channels', 'add', '111', 'admin');
        const error = await refusal(p.admission.submit(params('here?'), ctx('u1', { channelId: '222' })), ChannelNotAllowedError);
        assert.equal(error.message, 'Image generation is not enabled in this channel; use <#111>.');
        assert.equal(error.retryAt, undefined);
        await p.admission.submit(params('there'), ctx('u1', { channelId: '111' }));
        await p.admission.submit(params('in a thread'), ctx('u1', { channelId: '333', parentChannelId: '111' }));
        await p.queue.idle();
        await p.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('limits: sizes refuse, steps/count/cfg clamp with notes, the default negative is merged', async () => {
      const instance = await backend.create();
      try {
        const clock = { now: NOON };
        const p = await boot(instance, clock);
        await p.settings.update(GUILD, { limits: { maxSteps: 40, maxCount: 2, maxCfg: 12 }, negative: 'lowres' }, 'admin');
        const size = await refusal(p.admission.submit(params('big', { width: 1024, height: 1024 }), ctx('u1')), RequestLimitError);
        assert.equal(size.field, 'size');
        assert.equal(size.message, 'Size 1024x1024 is not allowed here; choose one of 512x512, 512x768, 768x512.');
        await refusal(p.admission.submit(params('zero', { steps: 0 }), ctx('u1')), RequestLimitError);

        const result = await p.admission.submit(params('clamped', { steps: 80, count: 4, cfg: 25, negative: 'blurry', width: 768, height: 512 }), ctx('u1'));
        assert.deepEqual(result.notes, [
          "Steps lowered from 80 to 40, this server's maximum.",
          "Images lowered from 4 to 2, this server's maximum.",
          "CFG scale lowered from 25 to 12, this server's maximum.",
        ]);
        const stored = await p.queue.getJob(result.standing.job.id);
        assert.deepEqual(
          [stored?.params.steps, stored?.params.count, stored?.params.cfg, stored?.params.negative, stored?.params.width],
          [40, 2, 12, 'blurry, lowres', 768],
        );
        const plain = await p.admission.submit(params('no negative'), ctx('u1'));
        assert.equal(plain.params.negative, 'lowres');
        assert.deepEqual(plain.notes, []);
        await p.queue.idle();
        await p.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('queue limits per user and per guild count queued and running jobs', async () => {
      const instance = await backend.create();
      try {
        const clock = { now: NOON };
        const generator = new StepGenerator();
        for (const prompt of ['h1', 'h2', 'h3', 'h4']) generator.hangOn.add(prompt);
        const p = await boot(instance, clock, generator);
        await p.settings.update(GUILD, { queue: { maxPerUser: 2, maxPerGuild: 3 } }, 'admin');
        const first = await p.admission.submit(params('h1'), ctx('a'));
        await p.admission.submit(params('h2'), ctx('a'));
        const mine = await refusal(p.admission.submit(params('h3'), ctx('a')), QueueFullError);
        assert.equal(mine.scope, 'user');
        assert.equal(mine.message, 'You already have 2 jobs queued or running, the most this server allows; wait for one to finish or cancel one.');
        await p.admission.submit(params('h3'), ctx('b'));
        const full = await refusal(p.admission.submit(params('h4'), ctx('c')), QueueFullError);
        assert.equal(full.scope, 'guild');
        // Another guild has its own room.
        await p.admission.submit(params('elsewhere'), { ...ctx('c'), guildId: '2000' });
        // When a job ends, room opens again.
        await p.queue.cancel(first.standing.job.id, { userId: 'a', isAdmin: false });
        await p.admission.submit(params('h4'), ctx('c'));
        await p.queue.close();
      } finally {
        await instance.dispose();
      }
    });

    test('queue.maxTotal bounds the whole queue across guilds, whatever the guild settings allow', async () => {
      const instance = await backend.create();
      try {
        const storage: Storage = instance.open();
        const generator = new StepGenerator();
        for (const prompt of ['t1', 't2', 't3']) generator.hangOn.add(prompt);
        const settings = new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults: FALLBACK_GUILD_SETTINGS });
        const h = createQueue(storage, generator);
        await h.queue.start();
        const admission = new Admission({ settings, usage: storage.namespace('usage'), queue: h.queue, maxTotal: 2, clock: () => NOON });
        await settings.update(GUILD, { queue: { maxPerUser: 0, maxPerGuild: 0 } }, 'admin');
        const first = await admission.submit(params('t1'), ctx('a'));
        await admission.submit(params('t2'), { ...ctx('b'), guildId: '2000' });
        const full = await refusal(admission.submit(params('t3'), ctx('c')), QueueFullError);
        assert.equal(full.scope, 'total');
        assert.equal(full.message, "The bot's queue is full (2 jobs across all servers); try again in a few minutes.");
        // A job that ends makes room for the next request, from any guild.
        await h.queue.cancel(first.standing.job.id, { userId: 'a', isAdmin: false });
        await admission.submit(params('t3'), ctx('c'));
        await h.queue.close();
      } finally {
        await instance.dispose();
      }
    });
  });
}
