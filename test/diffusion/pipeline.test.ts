import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadPipeline } from '../../src/diffusion/load.js';
import type { StableDiffusionPipeline } from '../../src/diffusion/pipeline.js';
import type { SchedulerName } from '../../src/diffusion/schedulers/types.js';
import { caseIds, fractionWithin, loadCase, maxAbs, maxAbsDiff, readF32, readReferencePng, TINY_MODEL, type ReferenceCase } from '../helpers/reference.js';

/** The reference names Karras DPM++ as its own scheduler; for us it is dpmpp_2m with the karras option. */
function schedulerOf(reference: ReferenceCase): { scheduler: SchedulerName; karras: boolean } {
  if (reference.scheduler === 'dpmpp_2m_karras') return { scheduler: 'dpmpp_2m', karras: true };
  return { scheduler: reference.scheduler as SchedulerName, karras: Boolean(reference.scheduler_overrides['use_karras_sigmas']) };
}

function rows(ids: number[][] | number[]): number[][] {
  return Array.isArray(ids[0]) ? (ids as number[][]) : [ids as number[]];
}

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
      // Token ids for the prompt and the (possibly empty) negative prompt, padded to 77 with 49407.
      assert.deepEqual(Array.from(pipeline.model.tokenizer.encode(reference.prompt)), rows(reference.input_ids)[0]);
      assert.deepEqual(Array.from(pipeline.model.tokenizer.encode(reference.negative)), rows(reference.negative_input_ids)[0]);

      // Text encoder output for the prompt (the second, conditional half of the guidance batch).
      const text = await pipeline.encodeText(reference.prompt, reference.negative, 1, true);
      const expectedEmbeds = readF32(id, 'prompt_embeds.f32');
      const promptEmbeds = text.embeddings.subarray(text.embeddings.length / 2);
      assert.ok(maxAbsDiff(promptEmbeds, expectedEmbeds) < 1e-4, `prompt embeds differ by ${maxAbsDiff(promptEmbeds, expectedEmbeds)}`);

      const { scheduler, karras } = schedulerOf(reference);
      let step1: Float32Array | undefined;
      const result = await pipeline.generate(
        {
          prompt: reference.prompt,
          negativePrompt: reference.negative,
          seed: BigInt(reference.seed),
          steps: reference.steps,
          cfg: reference.cfg,
          width: reference.width,
          height: reference.height,
          scheduler,
          karras,
          rng: reference.rng,
          batch: reference.n,
        },
        {
          onProgress: ({ step, latents }) => {
            if (step === 1) step1 = Float32Array.from(latents);
          },
        },
      );

      assert.deepEqual(result.latentShape, reference.latent_shape);
      assert.equal(result.timesteps.length, reference.timesteps.length);
      assert.ok(maxAbsDiff(result.timesteps, reference.timesteps) < 1e-3, 'timesteps differ');

      const expectedStep1 = readF32(id, 'latents_step1.f32');
      assert.ok(step1, 'progress callback saw step 1');
      const step1Tolerance = 1e-3 * maxAbs(expectedStep1);
      assert.ok(maxAbsDiff(step1, expectedStep1) <= step1Tolerance, `latents after step 1 differ by ${maxAbsDiff(step1, expectedStep1)} (tolerance ${step1Tolerance})`);

      const expectedFinal = readF32(id, 'latents_final.f32');
      const finalTolerance = 1e-3 * maxAbs(expectedFinal);
      const finalDiff = maxAbsDiff(result.latents, expectedFinal);
      assert.ok(finalDiff <= finalTolerance, `final latents differ by ${finalDiff} (tolerance ${finalTolerance})`);

      assert.equal(result.images.length, reference.n);
      for (const image of result.images) {
        const expected = await readReferencePng(id, image.index);
        assert.equal(image.width, expected.width);
        assert.equal(image.height, expected.height);
        const within = fractionWithin(image.rgb, expected.rgb, 1);
        assert.ok(within >= 0.999, `image ${image.index}: only ${(within * 100).toFixed(3)}% of values within ±1`);
        assert.equal(image.nsfw, reference.nsfw[image.index], `safety verdict of image ${image.index}`);
        t.diagnostic(`${id} image ${image.index}: ${(within * 100).toFixed(3)}% of values within ±1`);
      }
      t.diagnostic(`${id} ${reference.scheduler}/${reference.rng}: final latents max diff ${finalDiff.toExponential(2)} (max magnitude ${maxAbs(expectedFinal).toFixed(3)})`);
    });
  }
});
