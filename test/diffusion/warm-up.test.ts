/**
 * `pipeline.warmUp`: one short generation in the shape of the jobs to come, done once at start (the bot's runtime
 * calls it), so the first job does not pay for what happens once per session and shape.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPipeline } from '../../src/diffusion/load.js';
import { assertWithinReference, EXACT_BOUNDS, loadCase, measureAgainstReference, runReferenceCase, TINY_MODEL } from '../helpers/reference.js';

test('warm-up pins the UNet and opens the step graph in the jobs’ shape; the next job reopens nothing and matches diffusers', async (t) => {
  const lines: string[] = [];
  const pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu', pinUnetShapes: true, deviceLoop: 'always', log: (line) => lines.push(line) });
  t.after(async () => {
    await pipeline.release();
    await pipeline.model.release();
  });
  const reference = loadCase('p1'); // euler, cfg > 1, one image
  assert.equal(reference.scheduler, 'euler');
  const seconds = await pipeline.warmUp({ width: reference.width, height: reference.height, cfg: reference.cfg, scheduler: 'euler' });
  assert.ok(seconds > 0);
  assert.deepEqual(pipeline.model.unetPinnedShapes?.sample, [2, 4, reference.height / 8, reference.width / 8]);
  const warmLine = lines.find((line) => line.startsWith('warmed up in'));
  assert.match(warmLine ?? '', new RegExp(`^warmed up in [\\d.]+s \\(${reference.width}×${reference.height}, 1 image, cfg ${reference.cfg}\\)$`));
  const reopenedBefore = lines.filter((line) => line.startsWith('UNet reopened')).length;
  assert.equal(reopenedBefore, 1, 'the warm-up pinned the UNet');

  const run = await runReferenceCase(pipeline, reference, {});
  assert.equal(run.result.loop, 'device');
  assert.equal(lines.filter((line) => line.startsWith('UNet reopened')).length, 1, 'the job found the UNet already pinned');
  // The warm-up draws from its own generator: the job's noise, and so its image, are the reference's.
  assertWithinReference(run, await measureAgainstReference(run), EXACT_BOUNDS, 'p1 after warm-up');
});
