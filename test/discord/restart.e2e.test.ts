/**
 * Restarts: the queue, the buttons and the guild settings survive a SIGKILL of the bot process; SIGTERM is a clean
 * shutdown with exit code 0.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buttonId, hasPngs, pngParameters, Sandbox, seedOf } from './harness.js';

/** Keeps the single worker busy for seconds even on a fast machine (4 × 100 steps). */
const LONG = { steps: 100, size: '128x128', count: 4 } as const;

describe('bot restarts', () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start();
  });
  after(async () => {
    await sb?.stop();
  });

  test('SIGKILL with 3 jobs queued: after a restart all 3 complete, old buttons and settings still work', async () => {
    const { admin, bruno, chloe } = sb.people;
    // Before the crash: a finished job (its buttons are used after the restart) and a guild setting.
    const earlier = await sb.waitForResult(sb.imagine(bruno, { prompt: 'before the crash', steps: 4, seed: '5' }));
    const blocker = sb.imagine(admin, { prompt: 'interrupted', ...LONG });
    await sb.waitForInteraction(blocker, (v) => /Generating|Starting/.test(v.original?.content ?? ''));
    const queued = [
      sb.imagine(bruno, { prompt: 'queued one', steps: 4 }),
      sb.imagine(chloe, { prompt: 'queued two', steps: 4 }),
      sb.imagine(bruno, { prompt: 'queued three', steps: 4 }),
    ];
    for (const id of queued) await sb.waitForInteraction(id, (v) => (v.original?.content ?? '').startsWith('⏳ Queued'));
    const setting = sb.invoke({ user_id: admin, name: 'imagine-settings', subcommand: 'limits', options: { 'max-steps': 9 } });
    assert.match(await sb.ephemeralAnswer(setting), /steps ≤ 9/);

    const beforeRestart = sb.logs.length;
    await sb.restartBot(true);
    assert.equal(sb.bot.status()['starts'], 2);
    const restored = sb.logs.slice(beforeRestart).filter((l) => l.msg === 'job restored after a restart');
    // The three queued jobs, and the interrupted one (requeued ahead of them), are reloaded from the store.
    assert.ok(restored.length >= 3, `the jobs still waiting when the process was killed were restored (${restored.length})`);

    // The interrupted job is first in line again; its owner cancels it through the button on its old message.
    const interrupted = sb.interaction(blocker).original!;
    const cancel = sb.click(admin, interrupted.id, buttonId(interrupted, 'cancel'));
    await sb.waitForInteraction(cancel, (v) => v.acked);
    await sb.waitForInteraction(blocker, (v) => (v.original?.content ?? '').includes('Cancelled'));

    for (const id of queued) {
      const view = await sb.waitForResult(id);
      assert.ok(hasPngs(view.original), 'the job queued before the crash finished after the restart');
    }

    // A button on a message from before the restart: Same seed reproduces it.
    const original = earlier.original!;
    const same = await sb.waitForResult(sb.click(bruno, original.id, buttonId(original, 'same')));
    const [parameters] = await pngParameters(same.original!);
    assert.equal(seedOf(parameters!), '5');
    assert.equal(parameters!.split('\n')[0], 'before the crash');

    // The setting made before the crash still applies.
    const show = sb.invoke({ user_id: admin, name: 'imagine-settings', subcommand: 'show' });
    assert.match(await sb.ephemeralAnswer(show), /steps ≤ 9/);
    const clamped = sb.imagine(chloe, { prompt: 'too many steps', steps: 30 });
    const done = await sb.waitForResult(clamped);
    assert.match((await pngParameters(done.original!))[0]!, /Steps: 9,/);
  });

  test('SIGTERM: graceful shutdown with exit code 0; the interrupted job runs after the next start', async () => {
    const { admin, bruno } = sb.people;
    assert.match(await sb.ephemeralAnswer(sb.invoke({ user_id: admin, name: 'imagine-settings', subcommand: 'reset' })), /back to its default/);
    const running = sb.imagine(bruno, { prompt: 'interrupted by SIGTERM', seed: '11', ...LONG });
    await sb.waitForInteraction(running, (v) => /Generating/.test(v.original?.content ?? ''));
    const before = sb.logs.length;
    const exit = await sb.bot.stop({ hard: false });
    assert.deepEqual(exit, { code: 0, signal: null });
    const lines = sb.logs.slice(before);
    for (const expected of ['shutting down', 'disconnected from Discord', 'stopped']) assert.ok(lines.some((l) => l.msg === expected), `logged "${expected}"`);
    assert.ok(!lines.some((l) => l.msg === 'job finished'), 'the job was interrupted, not finished');

    const restart = sb.logs.length;
    await sb.startBot();
    assert.ok(sb.logs.slice(restart).some((l) => l.msg === 'job restored after a restart'));
    const view = await sb.waitForResult(running, 120_000);
    assert.deepEqual((await pngParameters(view.original!)).map(seedOf), ['11', '12', '13', '14']);
  });
});

describe('SIGTERM with a shutdown grace (queue.shutdownGraceSeconds, as in production)', () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start({ config: { queue: { shutdownGraceSeconds: 120 } }, stopTimeoutMs: 150_000 });
  });
  after(async () => {
    await sb?.stop();
  });

  test('the running job finishes and its images are posted before the bot exits 0; a queued one waits for the next start', async () => {
    const { bruno, chloe } = sb.people;
    const running = sb.imagine(bruno, { prompt: 'finished during shutdown', seed: '21', ...LONG });
    await sb.waitForInteraction(running, (v) => /Generating/.test(v.original?.content ?? ''));
    const queued = sb.imagine(chloe, { prompt: 'waits for the next start', steps: 4 });
    await sb.waitForInteraction(queued, (v) => (v.original?.content ?? '').startsWith('⏳ Queued'));
    const before = sb.logs.length;
    const exit = await sb.bot.stop({ hard: false });
    assert.deepEqual(exit, { code: 0, signal: null });
    const lines = sb.logs.slice(before).map((l) => l.msg);
    const shuttingDown = lines.indexOf('shutting down');
    const finished = lines.indexOf('job finished');
    assert.ok(shuttingDown >= 0 && finished > shuttingDown, `the job finished after SIGTERM: ${lines.join(' | ')}`);
    assert.equal(lines.filter((l) => l === 'job finished').length, 1, 'the queued job did not start');
    const view = sb.interaction(running);
    assert.ok(hasPngs(view.original), 'the images were posted before the exit');
    assert.deepEqual((await pngParameters(view.original!)).map(seedOf), ['21', '22', '23', '24']);

    await sb.startBot();
    const next = await sb.waitForResult(queued, 120_000);
    assert.equal((await pngParameters(next.original!)).length, 1);
  });
});
