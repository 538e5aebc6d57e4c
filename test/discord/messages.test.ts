/**
 * The parts of the Discord side that need no Discord: command definitions, custom ids, message texts and the NSFW
 * attachment policy (with real PNGs from sharp and our PNG chunk reader).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { ApplicationCommandOptionType, PermissionFlagsBits } from 'discord-api-types/v10';
import { buildCommandDefinitions } from '../../commands/index.js';
import { loadConfig } from '../../src/config/index.js';
import { prepareAttachments, policyApplies } from '../../src/discord/attachments.js';
import { commandDefinitionsFor } from '../../src/discord/command-data.js';
import { decodeCustomId, encodeCustomId, progressContent, resultEmbed } from '../../src/discord/render.js';
import { formatDuration, progressBar } from '../../src/util/format.js';
import { describeSettings, resolveRequest, settingsFromConfig } from '../../src/discord/rules.js';
import { encodePng, readTextChunks } from '../../src/diffusion/png.js';
import { SAMPLER_NAMES, SCHEDULER_NAMES } from '../../src/diffusion/schedulers/types.js';

type Option = { name: string; type: number; options?: Option[]; choices?: { value: string }[]; required?: boolean };

describe('command definitions', () => {
  const config = loadConfig({ env: {}, cwd: '/nonexistent-folder-for-defaults' });
  const commands = commandDefinitionsFor(config);
  const byName = (name: string) => commands.find((c) => c.name === name)!;

  test('/imagine takes its options from the configuration and the engine', () => {
    const options = byName('imagine').options as Option[];
    assert.deepEqual(options.map((o) => o.name), ['prompt', 'negative', 'seed', 'steps', 'cfg', 'size', 'sampler', 'count', 'clip-skip', 'image', 'strength']);
    assert.equal(options[0]!.required, true);
    assert.deepEqual(options.find((o) => o.name === 'size')!.choices!.map((c) => c.value), config.generation.limits.sizes);
    // Every scheduler, and the Karras variants of those diffusers has them for (issue 13), each under A1111's name.
    const samplers = options.find((o) => o.name === 'sampler')!.choices! as Array<{ name: string; value: string }>;
    assert.deepEqual(samplers.map((c) => c.value), [...SAMPLER_NAMES]);
    assert.ok(SCHEDULER_NAMES.every((name) => samplers.some((c) => c.value === name)), 'every scheduler is still offered');
    assert.deepEqual(samplers.map((c) => c.name), ['PLMS', 'Euler', 'Euler Karras', 'Euler a', 'DDIM', 'DPM++ 2M', 'DPM++ 2M Karras', 'LMS', 'LMS Karras', 'Heun', 'Heun Karras', 'DPM++ 2M SDE', 'DPM++ 2M SDE Karras', 'UniPC', 'UniPC Karras', 'LCM']);
  });

  test('/imagine-settings: Manage Guild by default, option names as issue 5 fixes them', () => {
    const settings = byName('imagine-settings');
    assert.equal(settings.default_member_permissions, PermissionFlagsBits.ManageGuild.toString());
    const sub = (name: string) => (settings.options as Option[]).find((o) => o.name === name)!;
    assert.deepEqual((settings.options as Option[]).map((o) => o.name), ['show', 'rate-limit', 'queue', 'limits', 'channels', 'nsfw', 'negative', 'clip-skip', 'blocklist', 'roles', 'reset']);
    assert.deepEqual(sub('rate-limit').options!.map((o) => o.name), ['jobs', 'minutes', 'cooldown', 'daily']);
    assert.deepEqual(sub('channels').options!.map((o) => o.name), ['action', 'channel']);
    assert.deepEqual(sub('channels').options![0]!.choices!.map((c) => c.value), ['add', 'remove', 'clear']);
    assert.equal(sub('channels').options![1]!.type, ApplicationCommandOptionType.Channel);
  });

  test('Discord’s limits: at most 25 choices, names lowercase, descriptions 1–100 characters', () => {
    const many = buildCommandDefinitions({ sizes: Array.from({ length: 30 }, (_, i) => `${64 + 8 * i}x512`), samplers: [], maxSteps: 50, maxCfg: 20, maxCount: 4 });
    const size = (many[0]!.options as Option[]).find((o) => o.name === 'size')!;
    assert.equal(size.choices!.length, 25);
    const walk = (options: Option[] | undefined, visit: (o: Option & { description?: string }) => void) =>
      options?.forEach((o) => {
        visit(o);
        walk(o.options, visit);
      });
    for (const command of commands) {
      assert.match(command.name, /^[-_a-z0-9]{1,32}$/);
      walk(command.options as Option[], (o) => {
        assert.match(o.name, /^[-_a-z0-9]{1,32}$/);
        assert.ok(o.description && o.description.length >= 1 && o.description.length <= 100, `${o.name}: ${o.description}`);
      });
    }
  });
});

describe('message rendering', () => {
  test('custom ids carry only the action and the job id, within Discord’s 100 characters', () => {
    const id = encodeCustomId('reroll', 'Ab3_-xyz9QwE');
    assert.equal(id, 'imagine:reroll:Ab3_-xyz9QwE');
    assert.ok(id.length <= 100);
    assert.deepEqual(decodeCustomId(id), { action: 'reroll', jobId: 'Ab3_-xyz9QwE' });
    assert.equal(decodeCustomId('imagine:explode:x'), undefined);
    assert.equal(decodeCustomId('other:reroll:x'), undefined);
    assert.equal(decodeCustomId('imagine:cancel:'), undefined);
  });

  test('progress line: step, bar, percentage, elapsed, ETA', () => {
    assert.equal(progressBar(0.5, 10), '█████░░░░░');
    assert.equal(progressBar(2, 4), '████');
    assert.equal(progressContent({ step: 5, totalSteps: 20, elapsedMs: 2000 }), '🎨 Generating — step 5/20 · `████░░░░░░░░░░░░` 25% · 2.0s elapsed · ETA 6.0s');
    // Several images: the line says which image and which of its steps, in the steps the user asked for (a 4-image
    // 20-step job used to read "step 60/80"); the bar, percentage and ETA stay those of the whole job.
    const fourImages = (step: number) => progressContent({ step, totalSteps: 80, stepsPerImage: 20, elapsedMs: 2000 });
    assert.match(fourImages(60), /^🎨 Generating — image 3\/4 · step 20\/20 · `.{16}` 75% · /);
    assert.match(fourImages(61), /^🎨 Generating — image 4\/4 · step 1\/20 · /);
    assert.match(fourImages(80), /^🎨 Generating — image 4\/4 · step 20\/20 · `█{16}` 100% · 2\.0s elapsed$/);
    assert.match(fourImages(1), /^🎨 Generating — image 1\/4 · step 1\/20 · /);
    assert.equal(progressContent({ step: 5, totalSteps: 20, stepsPerImage: 20, elapsedMs: 2000 }), progressContent({ step: 5, totalSteps: 20, elapsedMs: 2000 }), 'one image: as before');
    assert.equal(formatDuration(65_000), '1m 05s');
    assert.equal(formatDuration(3_720_000), '1h 02m');
  });

  test('result embed lists the parameters and clips long prompts', () => {
    const embed = resultEmbed({
      prompt: 'p'.repeat(5000), negative: 'n', seeds: ['1', '2'], steps: 20, cfg: 7.5, sampler: 'Euler a', width: 512, height: 768,
      model: 'sd15', elapsedMs: 1500, requesterId: '1', withheld: 1, flagged: 0,
    });
    assert.equal(embed.description!.length, 4000);
    const fields = Object.fromEntries(embed.fields!.map((f) => [f.name, f.value]));
    assert.deepEqual(fields, { Negative: 'n', Seeds: '1, 2', Steps: '20', CFG: '7.5', Sampler: 'Euler a', Size: '512×768', Time: '1.5s', Model: 'sd15' });
    assert.match(embed.footer!.text, /1 image\(s\) .* withheld/);
  });
});

describe('request resolution and settings text', () => {
  const config = loadConfig({ env: {}, cwd: '/nonexistent-folder-for-defaults' });
  const defaults = { steps: 30, cfg: 7, size: '512x512', scheduler: 'pndm' as const, rng: 'cpu' as const };

  test('defaults fill what was not typed; a guild without the default size gets its first size', () => {
    const params = resolveRequest({ prompt: '  a cat ', seed: '18446744073709551615' }, defaults, ['768x512']);
    assert.deepEqual(params, { prompt: 'a cat', negative: '', seed: '18446744073709551615', steps: 30, cfg: 7, width: 768, height: 512, scheduler: 'pndm', count: 1, rng: 'cpu' });
    assert.throws(() => resolveRequest({ prompt: 'x', seed: '18446744073709551616' }, defaults, ['512x512']), /too large/);
    assert.throws(() => resolveRequest({ prompt: '   ' }, defaults, ['512x512']), /empty/);
    assert.throws(() => resolveRequest({ prompt: 'x', sampler: 'dpm_fast' }, defaults, ['512x512']), /Unknown sampler/);
  });

  test('a "… Karras" sampler is its scheduler with Karras sigmas; the configured default may be one too', () => {
    const karras = resolveRequest({ prompt: 'x', sampler: 'dpmpp_2m_karras' }, defaults, ['512x512']);
    assert.equal(karras.scheduler, 'dpmpp_2m');
    assert.equal(karras.karras, true);
    const plain = resolveRequest({ prompt: 'x', sampler: 'dpmpp_2m' }, defaults, ['512x512']);
    assert.equal(plain.scheduler, 'dpmpp_2m');
    assert.ok(!('karras' in plain), 'other samplers leave Karras to the model, as jobs stored before it did');
    assert.throws(() => resolveRequest({ prompt: 'x', sampler: 'ddim_karras' }, defaults, ['512x512']), /Unknown sampler "ddim_karras"/);
    const byDefault = resolveRequest({ prompt: 'x' }, { ...defaults, scheduler: 'lms', karras: true }, ['512x512']);
    assert.deepEqual([byDefault.scheduler, byDefault.karras], ['lms', true]);
  });

  test('settings from the configuration are valid guild settings and read as one line per group', () => {
    const settings = settingsFromConfig(config);
    assert.equal(settings.nsfw.policy, config.safety.nsfwPolicy);
    const text = describeSettings(settings);
    assert.equal(text.split('\n').length, 9);
    assert.match(describeSettings({ ...settings, channels: ['123'] }, 'channels'), /<#123>/);
  });
});

describe('NSFW attachment policy', () => {
  async function png(nsfw: boolean | null) {
    const rgb = new Uint8Array(64 * 64 * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) % 256;
    return { png: await encodePng(rgb, 64, 64, 'a prompt\nSteps: 4, Seed: 1'), nsfw, seed: '1' };
  }

  test('applies only outside NSFW channels unless the guild checks those too', () => {
    assert.equal(policyApplies(false, false), true);
    assert.equal(policyApplies(true, false), false);
    assert.equal(policyApplies(true, true), true);
  });

  test('spoiler renames, blur replaces the pixels but keeps the parameters, withhold drops', async () => {
    const images = [await png(true), await png(false)];
    const spoiler = await prepareAttachments(images, { policy: 'spoiler', applies: true, jobId: 'J' });
    assert.deepEqual(spoiler.files.map((f) => f.name), ['SPOILER_imagine-J-1.png', 'imagine-J-2.png']);
    assert.equal(spoiler.flagged, 1);

    const blur = await prepareAttachments(images, { policy: 'blur', applies: true, jobId: 'J' });
    const blurred = blur.files[0]!.data as Buffer;
    assert.equal(blur.files[0]!.name, 'SPOILER_imagine-J-1.png');
    assert.equal(readTextChunks(blurred)['parameters'], 'a prompt\nSteps: 4, Seed: 1');
    const [before, after] = await Promise.all([sharp(images[0]!.png).raw().toBuffer(), sharp(blurred).raw().toBuffer()]);
    assert.equal(after.length, before.length);
    assert.ok(!after.equals(before), 'the pixels changed');

    const withhold = await prepareAttachments(images, { policy: 'withhold', applies: true, jobId: 'J' });
    assert.deepEqual(withhold.files.map((f) => f.name), ['imagine-J-2.png']);
    assert.equal(withhold.withheld, 1);

    const nsfwChannel = await prepareAttachments(images, { policy: 'withhold', applies: false, jobId: 'J' });
    assert.equal(nsfwChannel.files.length, 2);
  });
});
