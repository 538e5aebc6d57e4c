/**
 * Issue 15's pure parts on the bot side: custom ids with an image index, the buttons under a finished job within
 * Discord's 5 × 5, the grid layout and picture, the size an attachment is fitted to, and the ⓘ text.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { gridAttachment, gridLayout, prepareAttachments } from '../../src/discord/attachments.js';
import { fitImage, nearestAllowedSize } from '../../src/discord/input-image.js';
import { jobInfoContent, parseJobReference } from '../../src/discord/job-info.js';
import { decodeCustomId, encodeCustomId, finishedButtons, originText } from '../../src/discord/render.js';
import type { JobRecord } from '../../src/queue/index.js';

const JOB = 'Ab3_-xyz9QwE';

function labels(rows: ReturnType<typeof finishedButtons>): string[][] {
  return rows.map((row) => row.components.map((c) => ('label' in c ? (c.label ?? '') : '')));
}

function solid(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();
}

describe('image buttons', () => {
  test('custom ids carry the image (1-based) after the job id; malformed ones are refused', () => {
    assert.equal(encodeCustomId('upscale', JOB, 2), `imagine:upscale:${JOB}:2`);
    assert.deepEqual(decodeCustomId(`imagine:upscale:${JOB}:2`), { action: 'upscale', jobId: JOB, image: 2 });
    assert.deepEqual(decodeCustomId(`imagine:vary-strong:${JOB}:1`), { action: 'vary-strong', jobId: JOB, image: 1 });
    assert.deepEqual(decodeCustomId(`imagine:info:${JOB}`), { action: 'info', jobId: JOB });
    for (const bad of [`imagine:upscale:${JOB}:0`, `imagine:upscale:${JOB}:x`, `imagine:upscale:${JOB}:1:2`, `imagine:upscale:${JOB}:-1`]) {
      assert.equal(decodeCustomId(bad), undefined, bad);
    }
  });

  test('finished buttons: one image, several images, failed jobs; never more than 5 rows of 5, ids unique', () => {
    assert.deepEqual(labels(finishedButtons(JOB, { images: 1 })), [
      ['Upscale ×2', 'Vary (subtle)', 'Vary (strong)', 'Remix'],
      ['Re-roll', 'Same seed', 'Info', 'Delete'],
    ]);
    assert.deepEqual(labels(finishedButtons(JOB, { images: 3 })), [
      ['U1', 'U2', 'U3'],
      ['V1', 'V2', 'V3'],
      ['Re-roll', 'Same seed', 'Remix', 'Info', 'Delete'],
    ]);
    assert.deepEqual(labels(finishedButtons(JOB)), [['Re-roll', 'Same seed', 'Info', 'Delete']], 'a failed job: no image buttons');
    assert.deepEqual(labels(finishedButtons(JOB, { canRetry: false, images: 4 })), [['Info', 'Delete']]);
    for (const images of [0, 1, 2, 3, 4, 9]) {
      const rows = finishedButtons(JOB, { images });
      assert.ok(rows.length <= 5 && rows.every((row) => row.components.length <= 5), `${images} image(s)`);
      const ids = rows.flatMap((row) => row.components.map((c) => ('custom_id' in c ? c.custom_id : '')));
      assert.equal(new Set(ids).size, ids.length);
      assert.ok(ids.every((id) => id.length <= 100 && decodeCustomId(id)?.jobId === JOB));
    }
    const u4 = finishedButtons(JOB, { images: 4 })[0]!.components[3]!;
    assert.equal('custom_id' in u4 ? u4.custom_id : '', `imagine:upscale:${JOB}:4`);
  });
});

describe('grid', () => {
  test('layouts: 1×2 for two, 2×2 for three (one cell blank) and four', () => {
    assert.deepEqual(gridLayout(2), { columns: 2, rows: 1 });
    assert.deepEqual(gridLayout(3), { columns: 2, rows: 2 });
    assert.deepEqual(gridLayout(4), { columns: 2, rows: 2 });
  });

  test('cell i is image i; a withheld image leaves its cell blank and a flagged one makes the grid a spoiler', async () => {
    const colours: [number, number, number][] = [
      [255, 0, 0],
      [0, 255, 0],
      [0, 0, 255],
    ];
    const images = await Promise.all(colours.map(async (rgb, i) => ({ png: await solid(8, 8, rgb), seed: String(i), nsfw: i === 1 })));
    const prepared = await prepareAttachments(images, { policy: 'withhold', applies: true, jobId: JOB });
    assert.equal(prepared.withheld, 1);
    const grid = await gridAttachment(prepared, { jobId: JOB, width: 8, height: 8 });
    assert.equal(grid?.name, `imagine-${JOB}-grid.webp`);
    const { data, info } = await sharp(grid!.data as Buffer).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [16, 16]);
    const pixel = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
    const near = (actual: number[], expected: number[]) => actual.every((v, i) => Math.abs(v - expected[i]!) <= 24);
    assert.ok(near(pixel(4, 4), [255, 0, 0]), `top left is image 1: ${pixel(4, 4)}`);
    assert.ok(near(pixel(12, 4), [0, 0, 0]), `top right (image 2, withheld) is blank: ${pixel(12, 4)}`);
    assert.ok(near(pixel(4, 12), [0, 0, 255]), `bottom left is image 3: ${pixel(4, 12)}`);
    assert.ok(near(pixel(12, 12), [0, 0, 0]), 'bottom right: no fourth image');

    const spoilered = await gridAttachment(await prepareAttachments(images, { policy: 'spoiler', applies: true, jobId: JOB }), { jobId: JOB, width: 8, height: 8 });
    assert.equal(spoilered?.name, `SPOILER_imagine-${JOB}-grid.webp`);
    assert.equal(await gridAttachment(await prepareAttachments(images.slice(0, 1), { policy: 'spoiler', applies: false, jobId: JOB }), { jobId: JOB, width: 8, height: 8 }), undefined, 'no grid for one image');
  });
});

describe('starting images', () => {
  const sizes = ['512x512', '512x768', '768x512', '1024x1024'];

  test('the allowed size nearest the shape: aspect first, then pixel count', () => {
    assert.equal(nearestAllowedSize(600, 900, sizes), '512x768', 'portrait 2:3');
    assert.equal(nearestAllowedSize(1920, 1080, sizes), '768x512', 'landscape 16:9 → the nearest landscape');
    assert.equal(nearestAllowedSize(300, 300, sizes), '512x512', 'square, small');
    assert.equal(nearestAllowedSize(2000, 2000, sizes), '1024x1024', 'square, large');
    assert.equal(nearestAllowedSize(100, 100, ['nonsense']), undefined);
  });

  test('fitted by cover and centre crop: proportions kept, exact size, PNG', async () => {
    // Left half red, right half blue, 200×100: fitted to 64×64 the centre crop keeps both halves, unstretched.
    const left = await solid(100, 100, [255, 0, 0]);
    const wide = await sharp({ create: { width: 200, height: 100, channels: 3, background: { r: 0, g: 0, b: 255 } } }).composite([{ input: left, left: 0, top: 0 }]).jpeg().toBuffer();
    const fitted = await fitImage(wide, 64, 64);
    const { data, info } = await sharp(fitted).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [64, 64, 3]);
    assert.equal((await sharp(fitted).metadata()).format, 'png');
    assert.ok(data[(32 * 64 + 4) * 3]! > 200, 'red on the left');
    assert.ok(data[(32 * 64 + 60) * 3 + 2]! > 200, 'blue on the right');
  });
});

describe('job info', () => {
  const parent: JobRecord = {
    v: 1,
    id: 'Parent000000',
    owner: { userId: '1', guildId: '2', channelId: '3' },
    params: { prompt: 'a lighthouse', negative: '', seed: '10', steps: 20, cfg: 7, width: 64, height: 64, scheduler: 'euler', count: 2, rng: 'cpu' },
    status: 'done',
    seq: 1,
    createdAt: Date.UTC(2026, 11, 6),
    attempts: 1,
    result: { seeds: ['10', '11'], nsfw: [null, null], files: [], durationMs: 1500, model: 'tiny-sd' },
    meta: {},
  };
  const child: JobRecord = {
    ...parent,
    id: 'Child0000000',
    params: { ...parent.params, seed: '11', count: 1, width: 128, height: 128, negative: 'fog', init: { ref: 'ab'.repeat(32), strength: 0.5 } },
    result: { seeds: ['11'], nsfw: [null], files: [], durationMs: 2500, model: 'tiny-sd' },
    parentId: parent.id,
    relation: 'upscale',
    parentImage: 2,
  };

  test('every parameter, the starting image and the parent with the image it came from', () => {
    const text = jobInfoContent(child, parent);
    assert.equal(
      text,
      [
        'ℹ️ **Job** `Child0000000` · done · by <@1> · <t:1796515200:f>',
        '**Prompt:** a lighthouse',
        '**Negative:** fog',
        'Seed: 11 · Steps: 20 · CFG: 7 · Sampler: Euler · Size: 128×128 · Images: 1 · Clip skip: 1 · RNG: cpu · Prompt syntax: plain',
        '**Starts from an image** (img2img), strength 0.5 · image `abababababab`',
        '**Model:** tiny-sd · took 2.5s',
        '**Made as** an upscale ×2 of `Parent000000` (image 2): a lighthouse · seed 11 · 64×64',
      ].join('\n'),
    );
    assert.match(jobInfoContent(child, null), /\*\*Made as\*\* an upscale ×2 of `Parent000000` \(image 2\) \(no longer stored\)$/);
    assert.ok(jobInfoContent({ ...child, params: { ...child.params, prompt: 'x'.repeat(5000), negative: 'y'.repeat(5000) } }, parent).length <= 2000);
  });

  test('the result embed names where a job comes from', () => {
    assert.equal(originText(child), 'An upscale ×2 of image 2 of `Parent000000`');
    assert.equal(originText({ parentId: 'P', relation: 'remix' }), 'A remix (edited prompt) of `P`');
    assert.equal(originText({ parentId: 'P' }), 'Made from `P`');
    assert.equal(originText({}), undefined);
  });

  test('a job id or a link to a message', () => {
    assert.deepEqual(parseJobReference(' Ab3_-xyz9QwE '), { jobId: 'Ab3_-xyz9QwE' });
    assert.deepEqual(parseJobReference('https://discord.com/channels/1/22/333'), { channelId: '22', messageId: '333' });
    assert.equal(parseJobReference('hello'), undefined);
  });
});
