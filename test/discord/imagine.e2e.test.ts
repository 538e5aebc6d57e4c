/**
 * /imagine end to end: the real bot process (discord.js) against the emulator, with the tiny model.
 * One bot process for the whole file; tests run in order and each waits for its own jobs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buttonId, download, ephemeralText, hasPngs, pngParameters, Sandbox, seedOf, waitUntil } from './harness.js';

/**
 * A job that keeps the single worker busy for seconds even on a fast machine (4 × 150 steps, this file's config
 * allowing 150: a job's 4 images are one batched run, which on the CPU makes 4 × 100 steps end in ~10 s, before ten
 * jobs are queued on a loaded machine); tests cancel it once it has served its purpose, so they do not depend on how
 * fast the machine is.
 */
const LONG = { steps: 150, size: '128x128', count: 4 } as const;

describe('/imagine end to end', () => {
  let sb: Sandbox;

  /** Starts a LONG job for `user` and resolves once it is generating. */
  async function startBlocker(user: string, prompt: string): Promise<string> {
    const id = sb.imagine(user, { prompt, ...LONG });
    await sb.waitForInteraction(id, (v) => /Generating|Starting/.test(v.original?.content ?? ''));
    return id;
  }

  /** The requester cancels a job through its ❌ button, wherever its message now lives. */
  async function cancelThrough(user: string, messageId: string, customId: string): Promise<void> {
    const click = sb.click(user, messageId, customId);
    await sb.waitForInteraction(click, (v) => v.acked);
  }

  before(async () => {
    sb = await Sandbox.start({ config: { generation: { limits: { maxSteps: 150 } } } });
  });
  after(async () => {
    await sb?.stop();
  });

  test('the model is loaded and warmed up once, in the default job shape, before the commands are registered', () => {
    const index = (predicate: (msg: string) => boolean): number => sb.logs.findIndex((line) => predicate(line.msg));
    const engine = sb.logs.filter((line) => line.module === 'engine').map((line) => line.msg);
    assert.equal(engine.filter((msg) => /^model tiny-sd loaded on cpu in \d/.test(msg)).length, 1, engine.join('\n'));
    // The harness's config: 64x64, cfg 7, one image.
    assert.equal(engine.filter((msg) => /^warmed up in [\d.]+s \(64×64, 1 image, cfg 7\)$/.test(msg)).length, 1, engine.join('\n'));
    const warmed = index((msg) => msg.startsWith('warmed up in'));
    const registered = index((msg) => msg === 'slash commands registered');
    assert.ok(index((msg) => msg.startsWith('model tiny-sd loaded')) < warmed && warmed < registered);
  });

  test('a full run: deferred, queued, previews, PNGs with parameters, buttons', async () => {
    const { bruno, chloe } = sb.people;
    // Keep the worker busy so this job really waits: on an idle queue it starts at once and the "Queued" edit is
    // (rightly) coalesced away by the first progress edit.
    const blocker = await startBlocker(chloe, 'keeps the worker busy');
    const id = sb.imagine(bruno, { prompt: 'a lighthouse at dusk', negative: 'blurry', seed: '1234', steps: 60, cfg: 6.5, size: '128x128', count: 2 });
    const queued = await sb.waitForInteraction(id, (v) => (v.original?.content ?? '').startsWith('⏳ Queued'));
    const running = sb.interaction(blocker).original!;
    await cancelThrough(chloe, running.id, buttonId(running, 'cancel'));
    assert.ok(queued.original, 'the queued state was shown');
    const view = await sb.waitForResult(id);
    assert.equal(view.ack_type, 5, 'the command is deferred');
    assert.equal(view.ephemeral, false);
    const reply = view.original!;
    const contents = reply.history.map((h) => h.content);
    assert.ok(contents.some((c) => c.startsWith('⏳ Queued — position')), `a queued state was shown: ${contents.join(' | ')}`);
    // Progress in the steps asked for: the job's 2 images run as one batch, so step k of 60 (not k of 120).
    assert.ok(contents.some((c) => /step \d+\/60/.test(c)), 'progress with step k/n of the one batched run was shown');
    assert.ok(!contents.some((c) => /step \d+\/120/.test(c)), 'no job-wide step count');
    assert.ok(reply.history.some((h) => h.attachments.some((name) => name.startsWith('preview.'))), 'at least one preview image edit');

    const pngs = reply.attachments.filter((a) => a.content_type === 'image/png');
    assert.equal(pngs.length, 2);
    const parameters = await pngParameters(reply);
    assert.deepEqual(parameters.map(seedOf), ['1234', '1235']);
    for (const text of parameters) {
      const [prompt, negative, settings] = text.split('\n');
      assert.equal(prompt, 'a lighthouse at dusk');
      assert.equal(negative, 'Negative prompt: blurry');
      assert.match(settings!, /^Steps: 60, Sampler: [^,]+, CFG scale: 6\.5, Seed: \d+, Size: 128x128, Model: tiny-sd/);
    }
    const embed = reply.embeds[0] as { description: string; fields: { name: string; value: string }[] };
    assert.equal(embed.description, 'a lighthouse at dusk');
    const field = (name: string) => embed.fields.find((f) => f.name === name)?.value;
    assert.equal(field('Seeds'), '1234, 1235');
    assert.equal(field('Steps'), '60');
    assert.equal(field('CFG'), '6.5');
    assert.equal(field('Size'), '128×128');
    assert.equal(field('Negative'), 'blurry');
    assert.equal(field('Model'), 'tiny-sd');
    for (const action of ['reroll', 'same', 'delete']) buttonId(reply, action);
  });

  test('"DPM++ 2M Karras" from the sampler list reaches the engine and is named in the embed and the PNG', async () => {
    const { bruno } = sb.people;
    const view = await sb.waitForResult(sb.imagine(bruno, { prompt: 'a karras cat', sampler: 'dpmpp_2m_karras', steps: 3, seed: '5' }));
    const reply = view.original!;
    const [parameters] = await pngParameters(reply);
    assert.match(parameters!, /Steps: 3, Sampler: DPM\+\+ 2M Karras, CFG scale: 7, Seed: 5,/);
    const embed = reply.embeds[0] as { fields: { name: string; value: string }[] };
    assert.equal(embed.fields.find((f) => f.name === 'Sampler')?.value, 'DPM++ 2M Karras');
    // Same seed on the Karras job keeps Karras (the stored parameters carry it).
    const same = await sb.waitForResult(sb.click(bruno, reply.id, buttonId(reply, 'same')));
    const [sameParameters] = await pngParameters(same.original!);
    assert.equal(sameParameters, parameters);
  });

  test('A1111 habits: seed -1 draws a random seed; a prompt of zero-width characters is refused ephemerally', async () => {
    const { chloe, channelA } = sb.people;
    const random = await sb.waitForResult(sb.imagine(chloe, { prompt: 'a random seed', seed: '-1', steps: 2 }));
    const [parameters] = await pngParameters(random.original!);
    const seed = seedOf(parameters!);
    assert.ok(seed !== undefined && BigInt(seed) < 2n ** 32n, `a real random seed is recorded: ${parameters}`);
    const embed = random.original!.embeds[0] as { fields: { name: string; value: string }[] };
    assert.equal(embed.fields.find((f) => f.name === 'Seed')?.value, seed, 'the embed shows the seed drawn');
    const invisible = sb.imagine(chloe, { prompt: '\u200b\u200b\u200b' });
    assert.equal(await sb.ephemeralAnswer(invisible), 'Your prompt has no visible text (only spaces, zero-width or control characters); describe what to draw.');
    assert.equal(sb.interaction(invisible).original?.ephemeral ?? true, true);
    assert.ok(!sb.channelMessages(channelA).some((m) => m.interaction_id === invisible), 'nothing public was left behind');
  });

  test('re-roll gives a new seed; same seed gives identical PNG bytes', async () => {
    const { chloe } = sb.people;
    const first = await sb.waitForResult(sb.imagine(chloe, { prompt: 'a red fox', steps: 4 }));
    const original = first.original!;
    const [originalParameters] = await pngParameters(original);
    const originalSeed = seedOf(originalParameters!);
    const originalBytes = await download(original.attachments[0]!.url);

    const reroll = await sb.waitForResult(sb.click(chloe, original.id, buttonId(original, 'reroll')));
    assert.equal(reroll.ack_type, 5, 'a re-roll is a new deferred reply');
    assert.notEqual(reroll.original!.id, original.id, 'the re-roll posts a new message');
    const [rerollParameters] = await pngParameters(reroll.original!);
    assert.notEqual(seedOf(rerollParameters!), originalSeed);
    assert.equal(rerollParameters!.split('\n')[0], 'a red fox');

    const same = await sb.waitForResult(sb.click(chloe, original.id, buttonId(original, 'same')));
    const [sameParameters] = await pngParameters(same.original!);
    assert.equal(seedOf(sameParameters!), originalSeed);
    assert.ok((await download(same.original!.attachments[0]!.url)).equals(originalBytes), 'same seed reproduces the PNG byte for byte');
  });

  test('cancel by the requester; cancel and delete by another member are refused', async () => {
    const { bruno, chloe, channelA } = sb.people;
    const blocker = await startBlocker(bruno, 'blocker');
    const victim = sb.imagine(chloe, { prompt: 'to be cancelled', steps: 4 });
    const queued = await sb.waitForInteraction(victim, (v) => (v.original?.content ?? '').startsWith('⏳ Queued'));
    const cancelId = buttonId(queued.original!, 'cancel');

    const refused = sb.click(bruno, queued.original!.id, cancelId);
    assert.match(await sb.ephemeralAnswer(refused), /not your job/i);
    assert.equal(sb.interaction(refused).original?.ephemeral ?? true, true);

    await cancelThrough(chloe, queued.original!.id, cancelId);
    const cancelled = await sb.waitForInteraction(victim, (v) => (v.original?.content ?? '').includes('Cancelled'));
    assert.ok(!hasPngs(cancelled.original), 'a cancelled job posts no image');

    // The running blocker is cancelled by its owner too: it stops without an image.
    const running = sb.interaction(blocker).original!;
    assert.match(await sb.ephemeralAnswer(sb.click(chloe, running.id, buttonId(running, 'cancel'))), /not your job/i);
    await cancelThrough(bruno, running.id, buttonId(running, 'cancel'));
    const stopped = await sb.waitForInteraction(blocker, (v) => (v.original?.content ?? '').includes('Cancelled'));
    assert.ok(!hasPngs(stopped.original));

    // Delete on someone else's job is refused; the owner's delete removes the message.
    const message = stopped.original!;
    const deleteId = buttonId(message, 'delete');
    assert.match(await sb.ephemeralAnswer(sb.click(chloe, message.id, deleteId)), /not your job/i);
    assert.ok(sb.channelMessages(channelA).some((m) => m.id === message.id), 'still there after the refused delete');
    await cancelThrough(bruno, message.id, deleteId);
    await waitUntil(() => (sb.channelMessages(channelA).some((m) => m.id === message.id) ? null : true), 20_000, 'the message to be deleted');
  });

  test('no 429 during a 30-step job with previews', async () => {
    const { admin } = sb.people;
    const logStart = sb.emulator.requestLog.length;
    const id = sb.imagine(admin, { prompt: 'many previews', steps: 30, size: '128x128', count: 4 });
    const view = await sb.waitForResult(id, 90_000);
    const previews = view.original!.history.filter((h) => h.attachments.some((name) => name.startsWith('preview.')));
    assert.ok(previews.length >= 1, `preview edits were made (${previews.length})`);
    const calls = sb.emulator.requestLog.slice(logStart);
    assert.deepEqual(calls.filter((c) => c.status === 429), [], 'no request was rate limited');
    assert.deepEqual(calls.filter((c) => c.route === 'unknown'), [], 'no unemulated route was called');
  });

  test('fairness: guild B’s one job starts second or third after guild A queued ten', async () => {
    const { bruno, chloe, admin, guildB, channelB } = sb.people;
    const logStart = sb.logs.length;
    const aJobs: string[] = [];
    // Guild A's first job is long (4 × 150 steps), so its other nine are all queued while it runs, before guild B
    // asks: queuing ten jobs takes several seconds on a loaded 2-core machine, because each admission writes to
    // the SQLite file while the running job keeps both cores busy.
    aJobs.push(sb.imagine(bruno, { prompt: 'guild A job 0', ...LONG }));
    await sb.waitForLog((line) => line.msg === 'job started' && line['module'] === 'discord', { after: logStart });
    for (let i = 1; i < 10; i++) {
      const user = [bruno, chloe, admin][i % 3]!;
      aJobs.push(sb.imagine(user, { prompt: `guild A job ${i}`, steps: 4 }));
    }
    await waitUntil(() => (sb.logs.slice(logStart).filter((l) => l.msg === 'job queued' && l['module'] === 'discord').length >= 10 ? true : null), 90_000, 'ten queued jobs');
    const bJob = sb.imagine(bruno, { prompt: 'guild B job', steps: 4 }, { guild: guildB, channel: channelB });
    const bQueued = await sb.waitForLog((line) => line.msg === 'job queued' && line['module'] === 'discord' && line['guildId'] === guildB, { after: logStart });
    await waitUntil(() => (sb.jobStarts(logStart).some((l) => l.jobId === bQueued['jobId']) ? true : null), 90_000, 'guild B’s job to start');
    const order = sb.jobStarts(logStart).map((l) => l['guildId']);
    const bPlace = order.indexOf(guildB) + 1;
    assert.ok(bPlace === 2 || bPlace === 3, `guild B's job started as number ${bPlace} (${order.join(', ')})`);
    await sb.waitForResult(bJob);

    // Clear guild A's remaining jobs (each requester cancels their own) so the next test starts with an idle worker.
    for (const id of aJobs) {
      const view = sb.interaction(id);
      if (!view.original || hasPngs(view.original) || !/Queued|Generating|Starting/.test(view.original.content)) continue;
      const cancel = sb.click(view.user_id, view.original.id, buttonId(view.original, 'cancel'));
      await sb.waitForInteraction(cancel, (v) => v.acked);
    }
    for (const id of aJobs) await sb.waitForInteraction(id, (v) => hasPngs(v.original) || /Cancelled|Failed/.test(v.original?.content ?? ''), 60_000);
  });

  test('token expiry: a result after 15 minutes arrives as a channel message', async () => {
    const { bruno, chloe, channelA } = sb.people;
    const blocker = await startBlocker(bruno, 'slow one');
    const late = sb.imagine(chloe, { prompt: 'patient fox', steps: 4, seed: '77' });
    const queued = await sb.waitForInteraction(late, (v) => (v.original?.content ?? '').startsWith('⏳ Queued'));
    await sb.emulator.injectFault({ kind: 'advance_clock', seconds: 16 * 60 });
    // Free the worker: the blocker's owner cancels it (a new click, so a fresh interaction).
    const running = sb.interaction(blocker).original!;
    await cancelThrough(bruno, running.id, buttonId(running, 'cancel'));

    const message = await waitUntil(
      () => sb.channelMessages(channelA).find((m) => m.interaction_id === null && m.content.includes(`<@${chloe}>`) && hasPngs(m)) ?? null,
      90_000,
      'the result as a channel message',
    );
    const [parameters] = await pngParameters(message);
    assert.equal(seedOf(parameters!), '77');
    assert.ok(ephemeralText(sb.interaction(late)) === null, 'nothing ephemeral was needed');
    buttonId(message, 'reroll');
    assert.notEqual(message.id, queued.original!.id);
    // The old reply is pointed at the new message (an edit made right after the post).
    const oldReply = () => sb.channelMessages(channelA).find((m) => m.id === queued.original!.id);
    await waitUntil(() => (oldReply()?.content.includes(message.id) ? true : null), 20_000, 'the old reply to link to the result').catch(() => {
      assert.fail(`the old reply links to the result: ${oldReply()?.content}`);
    });
    assert.match(oldReply()!.content, /^➡️ The result is here: https:\/\/discord\.com\/channels\//);
  });

  test('no secrets in the logs: neither the bot token nor interaction tokens', () => {
    const output = sb.bot.output.join('\n');
    assert.ok(sb.logs.length > 50, 'the bot logged its work');
    assert.ok(sb.logs.every((line) => typeof line.msg === 'string'), 'structured JSON lines');
    assert.ok(!output.includes(sb.emulator.token), 'the bot token never appears');
    // The emulator's interaction tokens, like Discord's, start with base64("interaction:").
    assert.ok(!output.includes('aW50ZXJhY3Rpb246'), 'no interaction token appears');
    const jobLines = sb.logs.filter((l) => /^job (queued|started|finished|cancelled|failed)$/.test(l.msg) && l['module'] === 'discord');
    assert.ok(jobLines.length > 10 && jobLines.every((l) => typeof l['jobId'] === 'string'), 'job lines carry the job id');
  });
});
