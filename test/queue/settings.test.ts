// Guild settings on real storage (SQLite file and real Redis): defaults, validation with one-sentence errors,
// persistence across "processes" (a new Storage on the same backend), migration of an old shape, garbage records.
import assert from 'node:assert/strict';
import { describeNeeding } from '../helpers/needs.js';
import { SettingsValidationError } from '../../src/queue/errors.js';
import { FALLBACK_GUILD_SETTINGS, GuildSettingsStore, SETTINGS_VERSION, type GuildSettings, type GuildSettingsPatch } from '../../src/queue/settings.js';
import type { Storage } from '../../src/queue/storage.js';
import { backends } from './helpers/backends.js';
import { captureLogs } from './helpers/log-capture.js';

function open(storage: Storage, defaults: GuildSettings = FALLBACK_GUILD_SETTINGS) {
  const { logger, lines } = captureLogs();
  return { store: new GuildSettingsStore({ keyv: storage.namespace('settings'), defaults, logger }), lines };
}

for (const backend of backends) {
  describeNeeding(`guild settings on ${backend.name}`, backend.skip, ({ test }) => {
    test('a guild without a record gets the config defaults', async () => {
      const instance = await backend.create();
      try {
        const { store } = open(instance.open());
        assert.deepEqual(await store.get('100'), FALLBACK_GUILD_SETTINGS);
      } finally {
        await instance.dispose();
      }
    });

    test('changes are validated, with the field named and a one-sentence message; a refused change stores nothing', async () => {
      const instance = await backend.create();
      try {
        const { store } = open(instance.open());
        const cases: Array<[GuildSettingsPatch, string, RegExp]> = [
          [{ rateLimit: { jobs: -1 } }, 'rateLimit.jobs', /from 0 to 1000/],
          [{ rateLimit: { jobs: 2.5 } }, 'rateLimit.jobs', /whole number/],
          [{ rateLimit: { minutes: 0 } }, 'rateLimit.minutes', /from 1 to 1440/],
          [{ rateLimit: { cooldownSeconds: 86_401 } }, 'rateLimit.cooldownSeconds', /from 0 to 86400/],
          [{ queue: { maxPerUser: 101 } }, 'queue.maxPerUser', /from 0 to 100/],
          [{ limits: { maxCount: 5 } }, 'limits.maxCount', /from 1 to 4/],
          [{ limits: { maxCfg: Number.NaN } }, 'limits.maxCfg', /from 1 to 30/],
          [{ limits: { sizes: ['500x500'] } }, 'limits.sizes', /multiples of 8/],
          [{ limits: { sizes: [] } }, 'limits.sizes', /from 1 to 25/],
          [{ channels: ['general'] }, 'channels', /not a Discord channel id/],
          [{ exemptRoles: ['12', 'x'] }, 'exemptRoles', /not a Discord role id/],
          [{ nsfw: { policy: 'hide' as 'blur' } }, 'nsfw.policy', /spoiler, blur or withhold/],
          [{ negative: 'x'.repeat(1001) }, 'negative', /at most 1000/],
          [{ blocklist: ['fine', '/(a+)+$/'] }, 'blocklist', /Nested repetition/],
          [{ blocklist: ['/[unclosed/'] }, 'blocklist', /does not compile/],
        ];
        for (const [patch, field, message] of cases) {
          await assert.rejects(store.update('100', patch, 'admin'), (error: unknown) => {
            assert.ok(error instanceof SettingsValidationError, `${JSON.stringify(patch)}: ${String(error)}`);
            assert.equal(error.field, field);
            assert.equal(error.code, 'invalid_setting');
            assert.match(error.message, message);
            assert.match(error.message, /^[^\n]+\.$/, 'one sentence, ending with a full stop');
            return true;
          });
        }
        assert.deepEqual(await store.get('100'), FALLBACK_GUILD_SETTINGS);
        // Broken config defaults fail at construction, naming the field.
        assert.throws(
          () => open(instance.open(), { ...FALLBACK_GUILD_SETTINGS, limits: { ...FALLBACK_GUILD_SETTINGS.limits, maxSteps: 0 } }),
          (error: unknown) => error instanceof SettingsValidationError && error.field === 'limits.maxSteps',
        );
      } finally {
        await instance.dispose();
      }
    });

    test('settings persist across processes, store only overrides, and are logged', async () => {
      const instance = await backend.create();
      try {
        const first = open(instance.open());
        await first.store.update('100', { rateLimit: { jobs: 5, minutes: 10 }, limits: { sizes: ['512×768', '512 x 512'] } }, 'admin-1');
        await first.store.editList('100', 'channels', 'add', '111', 'admin-1');
        await first.store.editList('100', 'channels', 'add', '222', 'admin-1');
        await first.store.editList('100', 'channels', 'remove', '111', 'admin-1');
        await first.store.editList('100', 'blocklist', 'add', '/\\bgore\\b/', 'admin-1');
        await first.store.update('100', { nsfw: { policy: 'withhold' }, negative: ' blurry ', exemptRoles: ['333'] }, 'admin-2');
        await assert.rejects(first.store.editList('100', 'channels', 'remove', '999', 'admin-1'), SettingsValidationError);
        assert.ok(first.lines.some((l) => l.msg === 'guild settings changed' && l.actor === 'admin-2'));

        // A new process with different config defaults: the guild's changes stay, the rest follows the config.
        const newDefaults: GuildSettings = { ...FALLBACK_GUILD_SETTINGS, queue: { maxPerUser: 7, maxPerGuild: 70 } };
        const second = open(instance.open(), newDefaults);
        const settings = await second.store.get('100');
        assert.deepEqual(settings.rateLimit, { jobs: 5, minutes: 10, cooldownSeconds: 0, daily: 0 });
        assert.deepEqual(settings.limits.sizes, ['512x768', '512x512']);
        assert.deepEqual(settings.channels, ['222']);
        assert.deepEqual(settings.blocklist, ['/\\bgore\\b/']);
        assert.deepEqual(settings.nsfw, { policy: 'withhold', skipCheckerInNsfwChannels: true });
        assert.equal(settings.negative, 'blurry');
        assert.deepEqual(settings.exemptRoles, ['333']);
        assert.deepEqual(settings.queue, { maxPerUser: 7, maxPerGuild: 70 });
        // Another guild is untouched.
        assert.deepEqual(await second.store.get('200'), newDefaults);

        assert.deepEqual(await second.store.reset('100', 'admin-1'), newDefaults);
        assert.deepEqual(await open(instance.open(), newDefaults).store.get('100'), newDefaults);
      } finally {
        await instance.dispose();
      }
    });

    test('an old (version 1) record is migrated, written back in the current shape, and logged', async () => {
      const instance = await backend.create();
      try {
        const storage = instance.open();
        const keyv = storage.namespace('settings');
        await keyv.set('100', {
          jobsPerWindow: 3,
          windowMinutes: 15,
          cooldown: 20,
          maxQueuedPerUser: 2,
          maxImages: 2,
          allowedChannels: ['444'],
          bannedWords: ['gore', 'nsfw'],
          nsfwMode: 'block',
          defaultNegative: 'lowres',
        });
        const { store, lines } = open(storage);
        const settings = await store.get('100');
        assert.deepEqual(settings.rateLimit, { jobs: 3, minutes: 15, cooldownSeconds: 20, daily: 0 });
        assert.deepEqual(settings.queue, { maxPerUser: 2, maxPerGuild: FALLBACK_GUILD_SETTINGS.queue.maxPerGuild });
        assert.equal(settings.limits.maxCount, 2);
        assert.deepEqual(settings.channels, ['444']);
        assert.deepEqual(settings.blocklist, ['gore', 'nsfw']);
        assert.equal(settings.nsfw.policy, 'withhold');
        assert.equal(settings.negative, 'lowres');
        assert.ok(lines.some((l) => l.msg === 'guild settings migrated' && l.fromVersion === 1 && l.toVersion === SETTINGS_VERSION));
        const raw = (await keyv.get('100')) as { version: number; overrides: GuildSettingsPatch };
        assert.equal(raw.version, SETTINGS_VERSION);
        assert.deepEqual(raw.overrides.rateLimit, { jobs: 3, minutes: 15, cooldownSeconds: 20 });
      } finally {
        await instance.dispose();
      }
    });

    test('garbage records never crash: defaults, with a log line; a single bad group falls back alone', async () => {
      const instance = await backend.create();
      try {
        const storage = instance.open();
        const keyv = storage.namespace('settings');
        await keyv.set('1', 'not settings at all');
        await keyv.set('2', { version: 99, overrides: {} });
        await keyv.set('3', [1, 2, 3]);
        await keyv.set('4', { unrelated: true });
        await keyv.set('5', { version: SETTINGS_VERSION, overrides: { rateLimit: { jobs: -5 }, limits: { sizes: 'big' }, negative: 'ok' } });
        const { store, lines } = open(storage);
        for (const guild of ['1', '2', '3', '4']) {
          assert.deepEqual(await store.get(guild), FALLBACK_GUILD_SETTINGS, guild);
        }
        assert.equal(lines.filter((l) => l.msg === 'stored guild settings unreadable; using the defaults').length, 4);
        const partial = await store.get('5');
        assert.equal(partial.negative, 'ok');
        assert.deepEqual(partial.rateLimit, FALLBACK_GUILD_SETTINGS.rateLimit);
        assert.deepEqual(partial.limits, FALLBACK_GUILD_SETTINGS.limits);
        const dropped = lines.filter((l) => l.msg === 'stored guild setting invalid; using the default for it').map((l) => l.group);
        assert.deepEqual(dropped.sort(), ['limits', 'rateLimit']);
        // And the guild can still be configured afterwards.
        const fixed = await store.update('1', { rateLimit: { jobs: 1 } }, 'admin');
        assert.equal(fixed.rateLimit.jobs, 1);
      } finally {
        await instance.dispose();
      }
    });
  });
}
