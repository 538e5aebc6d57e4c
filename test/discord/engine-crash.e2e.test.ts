/**
 * The engine in its own process, end to end: the real bot on the emulator, and its engine process killed with SIGKILL
 * in the middle of a job (what the OOM killer does). The bot keeps answering, the job's message says what happened,
 * and the next job is made by a restarted engine.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hasPngs, Sandbox } from './harness.js';

describe('engine crash, end to end', () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start();
  });
  after(async () => {
    await sb?.stop();
  });

  test('SIGKILL of the engine mid-job: that job fails with a clear message, the bot stays up, the next job succeeds', async () => {
    const { bruno, chloe } = sb.people;
    const enginePid = (): number => {
      const started = sb.logs.filter((line) => line.msg === 'engine process started' && line['module'] === 'engine').at(-1);
      assert.ok(started, 'the bot logs its engine process');
      return started['pid'] as number;
    };
    const first = enginePid();
    assert.notEqual(first, sb.bot.pid, 'the engine is not the bot process');

    const doomed = sb.imagine(bruno, { prompt: 'the engine dies under me', steps: 100, size: '128x128', count: 4 });
    await sb.waitForInteraction(doomed, (view) => /Generating/.test(view.original?.content ?? ''));
    const logsBefore = sb.logs.length;
    process.kill(first, 'SIGKILL');
    const failed = await sb.waitForInteraction(doomed, (view) => /Failed/.test(view.original?.content ?? ''));
    assert.match(failed.original!.content, /The image engine crashed \(killed by SIGKILL[^)]*\); it has been restarted\. Try again\./);
    assert.ok(sb.bot.running, 'the bot process is still running');

    // While the engine restarts, the bot answers at once.
    const queue = sb.invoke({ user_id: chloe, name: 'imagine-queue' });
    await sb.waitForInteraction(queue, (view) => view.acked, 3_000);

    const next = sb.imagine(chloe, { prompt: 'after the crash' });
    const done = await sb.waitForResult(next);
    assert.ok(hasPngs(done.original));
    const crash = sb.logs.slice(logsBefore).find((line) => line.msg === 'engine process crashed');
    assert.ok(crash, 'the crash is logged');
    assert.equal(crash['signal'], 'SIGKILL');
    assert.notEqual(enginePid(), first, 'a new engine process made the next image');
  });
});
