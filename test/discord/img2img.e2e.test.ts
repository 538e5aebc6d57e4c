/**
 * Issue 15 end to end, bot side: an attachment in and an image out; the grid with per-image buttons; U2 upscales
 * image 2 to twice its size; V1 gives a new seed; Remix opens a modal whose submission queues the edited prompt;
 * /imagine-info on an old job after a restart. The real bot process (discord.js) against the emulator, tiny model.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import type { SandboxMessage } from '../../src/emulator/client.js';
import { buttonId, customIds, download, jobIdOf, pngParameters, Sandbox, seedOf } from './harness.js';

/** Labels of the buttons, row by row. */
function buttonRows(message: SandboxMessage): string[][] {
  return (message.components as { components?: { label?: string }[] }[]).map((row) => (row.components ?? []).map((c) => c.label ?? ''));
}

function pngs(message: SandboxMessage) {
  return message.attachments.filter((a) => a.content_type === 'image/png');
}

async function sizeOf(url: string): Promise<string> {
  const { width, height } = await sharp(await download(url)).metadata();
  return `${width}x${height}`;
}

describe('img2img, grid and image buttons end to end', () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start();
  });
  after(async () => {
    await sb?.stop();
  });

  test('attachment in → image out, fitted to the allowed size nearest its shape; wrong inputs are refused ephemerally', async () => {
    const { bruno } = sb.people;
    // 96×64 (3:2): both allowed sizes are square; 64×64 is the nearer in pixel count.
    const photo = await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 200, g: 40, b: 40 } } }).jpeg().toBuffer();
    const image = await sb.uploadAttachment('photo.jpg', photo, 'image/jpeg');
    const view = await sb.waitForResult(sb.imagine(bruno, { prompt: 'a red square, painted', image, strength: 0.5, steps: 4, seed: '77' }));
    const reply = view.original!;
    assert.equal(pngs(reply).length, 1);
    assert.equal(await sizeOf(pngs(reply)[0]!.url), '64x64');
    const [parameters] = await pngParameters(reply);
    assert.equal(seedOf(parameters!), '77');
    assert.match(parameters!, /Denoising strength: 0\.5/, 'the engine ran img2img from the attachment');
    // The starting image waits for the engine under <dataDir>/inputs, named by its SHA-256.
    const inputs = join(sb.dataDir, 'inputs');
    assert.ok(existsSync(inputs) && readdirSync(inputs).some((name) => /^[0-9a-f]{64}\.png$/.test(name)), 'the input image is stored for the engine');
    const info = await sb.ephemeralAnswer(sb.click(bruno, reply.id, buttonId(reply, 'info')));
    assert.match(info, /Starts from an image\*\* \(img2img\), strength 0\.5/);
    // The stored starting image makes the job reproducible: Same seed gives the same bytes.
    const same = await sb.waitForResult(sb.click(bruno, reply.id, buttonId(reply, 'same')));
    assert.deepEqual(await download(pngs(same.original!)[0]!.url), await download(pngs(reply)[0]!.url));

    const text = await sb.uploadAttachment('notes.txt', Buffer.from('not an image'), 'text/plain');
    assert.equal(await sb.ephemeralAnswer(sb.imagine(bruno, { prompt: 'from text', image: text })), 'The attachment is of type text/plain; attach a PNG, JPEG or WebP.');
    const fake = await sb.uploadAttachment('fake.png', Buffer.from('definitely not a png'), 'image/png');
    assert.equal(await sb.ephemeralAnswer(sb.imagine(bruno, { prompt: 'from junk', image: fake })), 'That attachment could not be read as an image; attach a PNG, JPEG or WebP.');
    assert.equal(
      await sb.ephemeralAnswer(sb.imagine(bruno, { prompt: 'too weak', image, strength: 0.2, steps: 4 })),
      'With 4 steps a strength of 0.2 runs no step at all; use a strength of at least 0.25 or more steps.',
    );
    assert.equal(
      await sb.ephemeralAnswer(sb.imagine(bruno, { prompt: 'no image', strength: 0.4 })),
      'The strength applies to a starting image: attach one with the image option.',
    );
  });

  test('a 4-image job: one grid plus the originals, U1…U4 and V1…V4; U2 upscales image 2 to twice its size; V1 gives a new seed', async () => {
    const { chloe } = sb.people;
    const view = await sb.waitForResult(sb.imagine(chloe, { prompt: 'four lanterns', steps: 4, seed: '500', count: 4 }));
    const reply = view.original!;
    const grid = reply.attachments.filter((a) => a.content_type === 'image/webp');
    assert.equal(grid.length, 1, 'one grid');
    assert.equal(await sizeOf(grid[0]!.url), '128x128', '2×2 cells of 64×64');
    assert.deepEqual((await pngParameters(reply)).map(seedOf), ['500', '501', '502', '503'], 'the originals, with their parameters');
    assert.deepEqual(buttonRows(reply), [
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
      ['Re-roll', 'Same seed', 'Remix', 'Info', 'Delete'],
    ]);
    const jobId = jobIdOf(reply);
    assert.ok(customIds(reply).includes(`imagine:upscale:${jobId}:2`));

    const upscale = await sb.waitForResult(sb.click(chloe, reply.id, `imagine:upscale:${jobId}:2`));
    const upscaled = upscale.original!;
    assert.equal(pngs(upscaled).length, 1);
    assert.equal(await sizeOf(pngs(upscaled)[0]!.url), '128x128', 'twice the 64×64 of image 2');
    const [upscaledParameters] = await pngParameters(upscaled);
    assert.equal(seedOf(upscaledParameters!), '501', 'the seed image 2 was made from');
    assert.match(upscaledParameters!, /Size: 128x128, .*Denoising strength: 0\.5/, 'img2img at 0.5, at twice the size');
    assert.equal(upscaledParameters!.split('\n')[0], 'four lanterns');
    const embed = upscaled.embeds[0] as { fields: { name: string; value: string }[] };
    assert.equal(embed.fields.find((f) => f.name === 'From')?.value, `An upscale ×2 of image 2 of \`${jobId}\``);
    // 256×256 is not among this guild's sizes: upscaling the upscale is refused with the reason.
    assert.equal(
      await sb.ephemeralAnswer(sb.click(chloe, upscaled.id, buttonId(upscaled, 'upscale'))),
      'Upscaling ×2 would make 256×256, which this server does not allow (sizes: 64×64, 128×128).',
    );

    const vary = await sb.waitForResult(sb.click(chloe, reply.id, `imagine:vary:${jobId}:1`));
    const varied = await pngParameters(vary.original!);
    assert.equal(varied.length, 4, 'as many variations as the job had images');
    const variedSeeds = varied.map(seedOf);
    assert.ok(!variedSeeds.includes('500'), `a new seed: ${variedSeeds.join(', ')}`);
    assert.equal(varied[0]!.split('\n')[0], 'four lanterns');
    assert.match(varied[0]!, /Size: 64x64, .*Denoising strength: 0\.35/);
    const info = await sb.ephemeralAnswer(sb.click(chloe, vary.original!.id, buttonId(vary.original!, 'info')));
    assert.match(info, new RegExp(`a variation of \`${jobId}\` \\(image 1\\)`));
    assert.match(info, /strength 0\.35/);
  });

  test('one image: Upscale ×2, Vary (subtle), Vary (strong), Remix; Remix opens a modal and queues the edited prompt with the same seed', async () => {
    const { bruno } = sb.people;
    const view = await sb.waitForResult(sb.imagine(bruno, { prompt: 'a castle', negative: 'fog', steps: 4, seed: '900' }));
    const reply = view.original!;
    assert.deepEqual(buttonRows(reply), [
      ['Upscale ×2', 'Vary (subtle)', 'Vary (strong)', 'Remix'],
      ['Re-roll', 'Same seed', 'Info', 'Delete'],
    ]);
    const open = sb.click(bruno, reply.id, buttonId(reply, 'remix'));
    const opened = await sb.waitForInteraction(open, (v) => v.modal !== null);
    const inputs = (opened.modal!['components'] as { components: { custom_id: string; value?: string }[] }[]).map((row) => row.components[0]!);
    assert.deepEqual(
      inputs.map((input) => [input.custom_id, input.value]),
      [
        ['prompt', 'a castle'],
        ['negative', 'fog'],
      ],
      'prefilled with the prompt and the negative prompt',
    );
    const submitted = await sb.submitModal(open, bruno, { prompt: 'a castle in the snow', negative: 'fog, rain' });
    const remixed = await sb.waitForResult(submitted);
    const [parameters] = await pngParameters(remixed.original!);
    const [prompt, negative] = parameters!.split('\n');
    assert.equal(prompt, 'a castle in the snow');
    assert.equal(negative, 'Negative prompt: fog, rain');
    assert.equal(seedOf(parameters!), '900', 'the same seed');
  });

  test('/imagine-info on an old job after a restart: parameters and the parent job from the store', async () => {
    const { bruno, chloe } = sb.people;
    const parent = await sb.waitForResult(sb.imagine(bruno, { prompt: 'an old lighthouse', steps: 3, seed: '4242', count: 2 }));
    const parentId = jobIdOf(parent.original!);
    const child = await sb.waitForResult(sb.click(bruno, parent.original!.id, `imagine:upscale:${parentId}:2`));
    const childId = jobIdOf(child.original!);

    await sb.restartBot(false);

    const byId = await sb.ephemeralAnswer(sb.invoke({ user_id: chloe, name: 'imagine-info', options: { job: childId } }));
    assert.match(byId, new RegExp(`^ℹ️ \\*\\*Job\\*\\* \`${childId}\` · done · by <@${bruno}>`));
    assert.match(byId, /\*\*Prompt:\*\* an old lighthouse/);
    assert.match(byId, /Seed: 4243 · Steps: 3 · CFG: 7 · Sampler: [^·]+ · Size: 128×128 · Images: 1/);
    assert.match(byId, /strength 0\.5/);
    assert.match(byId, new RegExp(`\\*\\*Made as\\*\\* an upscale ×2 of \`${parentId}\` \\(image 2\\): an old lighthouse · seed 4243 · 64×64`));
    // A link to the job's message names it too.
    const link = `https://discord.com/channels/${sb.people.guildA}/${sb.people.channelA}/${parent.original!.id}`;
    const byLink = await sb.ephemeralAnswer(sb.invoke({ user_id: chloe, name: 'imagine-info', options: { job: link } }));
    assert.match(byLink, new RegExp(`^ℹ️ \\*\\*Job\\*\\* \`${parentId}\` · done`));
    assert.match(byLink, /Seeds: 4242, 4243/);
    assert.equal(
      await sb.ephemeralAnswer(sb.invoke({ user_id: chloe, name: 'imagine-info', options: { job: 'nonsense' } })),
      'Give a job id (the ⓘ button shows it) or a link to a job’s message.',
    );
  });
});
