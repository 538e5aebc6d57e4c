/**
 * The real Stable Diffusion pipeline behind the queue's ImageGenerator contract: it turns a job's parameters into
 * PNGs carrying A1111's `parameters` chunk, reports every step with its latents for the live preview, and stops
 * between steps when the job is cancelled.
 *
 * Each image of a job is made from its own seed (seed, seed+1, …) like A1111's batches, so every image can be
 * re-made alone from the seed shown under it.
 */
import { MAX_SEED } from '../diffusion/rng/index.js';
import { clipSkipInfotext, encodePng, formatInfotext } from '../diffusion/png.js';
import { formatTokenCount, requestedStepOf, type StableDiffusionPipeline } from '../diffusion/pipeline.js';
import type { GenerateOptions, GeneratedImage, GeneratedImages, GenerationRequest, ImageGenerator } from '../queue/index.js';

export interface PipelineGeneratorOptions {
  /** Run the model's safety checker (when it has one). */
  safetyCheck: boolean;
  /**
   * Hand latents (for a preview) to the queue at most this often, and on the last step; other steps report only
   * their number. On a GPU that keeps latents on the device each hand-over costs a read-back. Default 1000 ms.
   */
  previewIntervalMs?: number;
}

/** seed + offset, wrapping inside the engine's seed range. */
export function offsetSeed(seed: bigint, offset: number): bigint {
  return (seed + BigInt(offset)) % (MAX_SEED + 1n);
}

export class PipelineImageGenerator implements ImageGenerator {
  constructor(
    private readonly pipeline: StableDiffusionPipeline,
    private readonly options: PipelineGeneratorOptions,
  ) {}

  get modelName(): string {
    return this.pipeline.model.name;
  }

  async generate(request: GenerationRequest, options: GenerateOptions): Promise<GeneratedImages> {
    const images: GeneratedImage[] = [];
    const count = Math.max(1, request.count);
    // Progress across the job's images, in the steps the user asked for.
    const userStep = (image: number, step: number, totalSteps: number) => image * request.steps + requestedStepOf(step, totalSteps, request.steps);
    const previewIntervalMs = this.options.previewIntervalMs ?? 1000;
    let lastPreviewAt = -Infinity;
    let previewDue = false;
    let promptTokens: string | undefined;
    for (let index = 0; index < count; index++) {
      const seed = offsetSeed(request.seed, index);
      const result = await this.pipeline.generate(
        {
          prompt: request.prompt,
          negativePrompt: request.negative,
          seed,
          steps: request.steps,
          cfg: request.cfg,
          width: request.width,
          height: request.height,
          scheduler: request.scheduler,
          // Absent on jobs stored before Karras samplers were offered: the model's scheduler config decides.
          ...(request.karras === undefined ? {} : { karras: request.karras }),
          rng: request.rng,
          batch: 1,
          safetyCheck: this.options.safetyCheck,
          // Jobs stored before the setting existed carry none and ran as plain (JobParams.promptSyntax).
          promptSyntax: request.promptSyntax ?? 'plain',
          clipSkip: request.clipSkip ?? 1,
        },
        {
          signal: options.signal,
          onStep: ({ step, totalSteps }) => {
            previewDue = step === totalSteps || performance.now() - lastPreviewAt >= previewIntervalMs;
            if (!previewDue) options.onProgress?.({ step: userStep(index, step, totalSteps), totalSteps: count * request.steps });
          },
          wantsLatents: () => previewDue,
          onProgress: (progress) => {
            lastPreviewAt = performance.now();
            options.onProgress?.({
              step: userStep(index, progress.step, progress.totalSteps),
              totalSteps: count * request.steps,
              latents: { data: progress.latents, shape: progress.shape },
            });
          },
        },
      );
      const image = result.images[0];
      if (!image) throw new Error('the pipeline returned no image');
      promptTokens = formatTokenCount(result.promptTokens);
      const infotext = formatInfotext({
        prompt: request.prompt,
        negativePrompt: request.negative,
        steps: request.steps,
        sampler: result.sampler,
        cfg: request.cfg,
        seed,
        width: image.width,
        height: image.height,
        model: this.pipeline.model.name,
        extra: clipSkipInfotext(request.clipSkip),
      });
      images.push({
        png: await encodePng(image.rgb, image.width, image.height, infotext),
        seed,
        ...(image.nsfw === null ? {} : { nsfw: image.nsfw }),
      });
    }
    return { images, model: this.pipeline.model.name, ...(promptTokens !== undefined ? { promptTokens } : {}) };
  }
}
