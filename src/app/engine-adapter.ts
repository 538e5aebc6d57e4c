/**
 * The real Stable Diffusion pipeline behind the queue's ImageGenerator contract: it turns a job's parameters into
 * PNGs carrying A1111's `parameters` chunk, reports every step with its latents for the live preview, and stops
 * between steps when the job is cancelled.
 *
 * Each image of a job is made from its own seed (seed, seed+1, …) like A1111's batches, so every image can be
 * re-made alone from the seed shown under it. The job's images are one generation with one generator per image
 * (diffusers' list of generators): the UNet runs once per step on all of them (batch 2N with guidance), which on a
 * GPU costs little more than one image, and each image still equals its seed made alone (rounding aside).
 */
import { MAX_SEED } from '../diffusion/rng/index.js';
import { clipSkipInfotext, denoisingStrengthInfotext, encodePng, formatInfotext, loraHashesInfotext, tiHashesInfotext } from '../diffusion/png.js';
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
    const count = Math.max(1, request.count);
    const seeds = Array.from({ length: count }, (_, index) => offsetSeed(request.seed, index));
    const previewIntervalMs = this.options.previewIntervalMs ?? 1000;
    let lastPreviewAt = -Infinity;
    let previewDue = false;
    // One generation of the whole job: its images denoised together (UNet batch 2N with guidance), each from its own
    // seed's generator, so each equals its seed made alone. Progress is that one run's steps, in the steps asked for.
    const result = await this.pipeline.generate(
      {
        prompt: request.prompt,
        negativePrompt: request.negative,
        seed: seeds,
        steps: request.steps,
        cfg: request.cfg,
        width: request.width,
        height: request.height,
        scheduler: request.scheduler,
        // Absent on jobs stored before Karras samplers were offered: the model's scheduler config decides.
        ...(request.karras === undefined ? {} : { karras: request.karras }),
        rng: request.rng,
        safetyCheck: this.options.safetyCheck,
        // Jobs stored before the setting existed carry none and ran as plain (JobParams.promptSyntax).
        promptSyntax: request.promptSyntax ?? 'plain',
        clipSkip: request.clipSkip ?? 1,
        ...(request.initImage === undefined ? {} : { initImage: request.initImage }),
      },
      {
        signal: options.signal,
        onStep: ({ step, totalSteps }) => {
          previewDue = step === totalSteps || performance.now() - lastPreviewAt >= previewIntervalMs;
          if (!previewDue) options.onProgress?.({ step: requestedStepOf(step, totalSteps, request.steps), totalSteps: request.steps });
        },
        wantsLatents: () => previewDue,
        onLoraLoad: (names) => options.onProgress?.({ step: 0, totalSteps: request.steps, loadingLoras: names }),
        onProgress: (progress) => {
          lastPreviewAt = performance.now();
          options.onProgress?.({
            step: requestedStepOf(progress.step, progress.totalSteps, request.steps),
            totalSteps: request.steps,
            latents: { data: progress.latents, shape: progress.shape },
          });
        },
      },
    );
    if (result.images.length !== count) throw new Error(`the pipeline returned ${result.images.length} images for ${count} seeds`);
    const images: GeneratedImage[] = [];
    for (const [index, image] of result.images.entries()) {
      const seed = seeds[index]!;
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
        // The prompt keeps its <lora:…> tags, as A1111 writes it; the hashes say which files they were.
        extra: { ...clipSkipInfotext(request.clipSkip), ...denoisingStrengthInfotext(request.initImage), ...loraHashesInfotext(result.loras), ...tiHashesInfotext(result.textualInversions) },
      });
      images.push({
        png: await encodePng(image.rgb, image.width, image.height, infotext),
        seed,
        ...(image.nsfw === null ? {} : { nsfw: image.nsfw }),
      });
    }
    return { images, model: this.pipeline.model.name, promptTokens: formatTokenCount(result.promptTokens) };
  }
}
