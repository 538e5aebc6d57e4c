import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadPipeline } from '../../src/diffusion/load.js';
import type { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import {
  assertTokenIds,
  assertWithinReference,
  caseIds,
  describeDeviation,
  EXACT_BOUNDS,
  loadCase,
  maxAbsDiff,
  measureAgainstReference,
  readF32,
  runReferenceCase,
  TINY_MODEL,
} from '../helpers/reference.js';

describe('pipeline reproduces diffusers on the reference cases', () => {
  let pipeline: StableDiffusionPipeline;
  before(async () => {
    pipeline = await loadPipeline(TINY_MODEL, { provider: 'cpu' });
  });
  after(async () => {
    await pipeline.model.release();
  });

  for (const id of caseIds()) {
    test(`case ${id}`, async (t) => {
      const reference = loadCase(id);
      assertTokenIds(pipeline.model.tokenizer, reference);

      // Text encoder output for the prompt (the second, conditional half of the guidance batch).
      const text = await pipeline.encodeText(reference.prompt, reference.negative, 1, true);
      const expectedEmbeds = readF32(id, 'prompt_embeds.f32');
      const promptEmbeds = text.embeddings.subarray(text.embeddings.length / 2);
      assert.ok(maxAbsDiff(promptEmbeds, expectedEmbeds) < 1e-4, `prompt embeds differ by ${maxAbsDiff(promptEmbeds, expectedEmbeds)}`);

      const run = await runReferenceCase(pipeline, reference);
      const deviation = await measureAgainstReference(run);
      t.diagnostic(describeDeviation(`${id} ${reference.scheduler}/${reference.rng}`, deviation));
      assertWithinReference(run, deviation, EXACT_BOUNDS, id);
    });
  }
});
