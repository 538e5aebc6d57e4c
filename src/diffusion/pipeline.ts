/**
 * Stable Diffusion text-to-image exactly as diffusers' StableDiffusionPipeline computes it, over ONNX Runtime, and
 * image-to-image as its StableDiffusionImg2ImgPipeline does (a request with `initImage`).
 * `generate` reads as diffusers' `__call__` in numbered sections; each part lives in its own file:
 * request.ts (the request, its checks and limits), vae-encode.ts and img2img.ts (the init image and where its loop starts), text-conditioning.ts (CLIP), unet-runner.ts (UNet feeds and
 * guidance), steppers.ts (where guidance and the scheduler step run: JS or the device graph, and the auto fallback),
 * vae-decode.ts, timings.ts, schedulers/ and rng/.
 */
import { createImageNoise } from './rng/index.js';
import type { NoiseGenerator } from './rng/types.js';
import { createScheduler } from './schedulers/index.js';
import { supportsLinearStep, type Scheduler, type SchedulerName } from './schedulers/types.js';
import { checkSafety } from './safety.js';
import { CancelledError } from './errors.js';
import { BatchedDenoiser } from './batched-denoiser.js';
import { DeviceStepper } from './device-step.js';
import type { StableDiffusionModel } from './model.js';
import { GpuTensorReader, GpuTensorUploader, keepsOutputsOnDevice, type ProviderName } from './providers.js';
import { imageCountOf, latentShapeOf, validateRequest, type GenerationRequest, type InitImage, type LatentShape } from './request.js';
import { img2imgStart } from './img2img.js';
import { encodeLatentDistribution, preprocessInitImage, type LatentDistribution } from './vae-encode.js';
import {
  CallbackFailure,
  DeviceLoopStepper,
  JsStepper,
  withJsFallback,
  type DenoiseStart,
  type DeviceLoopMode,
  type Stepper,
} from './steppers.js';
import type { PromptSyntax } from './prompt/index.js';
import { UnknownLoraError } from './lora/library.js';
import { encodeText, type PromptTokenCount, type TextConditioning } from './text-conditioning.js';
import { LoopTimings, TimingRecorder, type GenerationTimings } from './timings.js';
import { CpuGuidance, UnetRunner, unetSampleDims } from './unet-runner.js';
import { guidanceEmbeddingDim, guidanceEmbeddingRows, TIMESTEP_COND_INPUT } from './guidance-embedding.js';
import { decodeLatents, type DecodedImage } from './vae-decode.js';
import { extractExtraNetworks } from './lora/tags.js';
import type { LoraLibrary } from './lora/library.js';
import { LoraSessionCache, type LoraParts, type ResolvedLora } from './lora/sessions.js';

export {
  DEFAULT_CFG,
  DEFAULT_STEPS,
  DEFAULT_STRENGTH,
  HIRES_FIX_SCALE,
  HIRES_FIX_STRENGTH,
  MAX_BATCH,
  MAX_STEPS,
  hiresFixRequest,
  imageCountOf,
  imageSeedOf,
  latentShapeOf,
  requestedStepOf,
  validateRequest,
  validateStrength,
  type GenerationRequest,
  type InitImage,
  type LatentShape,
} from './request.js';
export { DEVICE_LOOP_MODES, type DeviceLoopMode } from './steppers.js';
export { MAX_CLIP_SKIP } from './clip-skip.js';
export type { GenerationTimings } from './timings.js';
export type { PromptTokenCount, TextConditioning } from './text-conditioning.js';
export { PROMPT_SYNTAXES, countTokens, formatTokenCount, type PromptSyntax } from './prompt/index.js';

export interface StepProgress {
  /** 1-based index of the step just finished. */
  step: number;
  totalSteps: number;
  timestep: number;
  /** Latents after this step; valid only during the callback (copy to keep). */
  latents: Float32Array;
  shape: LatentShape;
}

export interface PipelineOptions {
  /** The execution provider the model's sessions run on (default cpu); decides what `deviceLoop: 'auto'` does. */
  provider?: ProviderName;
  /** Default for every generation (default auto). */
  deviceLoop?: DeviceLoopMode;
  /** Where to say that the device loop failed and `auto` switched to the JS loop (one line). */
  log?: (line: string) => void;
  /**
   * Pin the UNet's input shapes to each generation's (batch, size, prompt length: 77 tokens, or 77 × chunks for a long
   * prompt under `a1111`): the UNet is reopened whenever they
   * change, which takes as long as loading it (seconds on a GPU), and runs with the export's shape arithmetic folded
   * away (pin-shapes.ts). Worth it where sizes rarely change; measured by `npm run bench:gpu` (default false).
   */
  pinUnetShapes?: boolean;
  /**
   * Continuous batching (batched-denoiser.ts): above 1, generations that overlap share one UNet batch of up to this
   * many rows (two per image with guidance, one without), each at its own step, on the JS stepper; `generate` calls
   * may then overlap. Not with `pinUnetShapes` (the batch size changes from step to step). Default 1: each
   * generation runs its own loop.
   */
  maxBatchRows?: number;
  /**
   * Where `<lora:name:w>` tags of an `a1111` prompt find their files, and how many merged LoRA sets to keep open
   * (lora/sessions.ts; default 2). Without it every LoRA tag is an unknown LoRA.
   */
  loras?: { library: LoraLibrary; cacheSize?: number };
}

/** A LoRA a generation used, for A1111's `Lora hashes` (name as written in the prompt, full hash of its file). */
export interface UsedLora {
  name: string;
  hash: string;
}

export interface StepInfo {
  /** 1-based index of the step just finished. */
  step: number;
  totalSteps: number;
  timestep: number;
}

export interface GenerateOptions {
  /**
   * Called after each step whose latents the caller wants (`wantsLatents`, default every step), with those latents.
   * In the device loop each such call costs a read-back from the device, so let `wantsLatents` say when a preview is
   * actually due; use `onStep` to count steps.
   */
  onProgress?: (progress: StepProgress) => void | Promise<void>;
  /** Which steps' latents `onProgress` gets (1-based step); steps it declines get no `onProgress` call. */
  wantsLatents?: (step: number, totalSteps: number) => boolean;
  /** Called after every step, without latents (nothing is read back for it). */
  onStep?: (info: StepInfo) => void;
  signal?: AbortSignal;
  /** Overrides the pipeline's default loop choice for this generation. */
  deviceLoop?: DeviceLoopMode;
  /** Called before a LoRA set that is not cached is merged and opened (seconds on a real model), with its names. */
  onLoraLoad?: (names: readonly string[]) => void;
}

export interface GeneratedImage {
  index: number;
  width: number;
  height: number;
  /** 8-bit RGB, row-major HWC: diffusers' `(x/2 + 0.5).clamp(0, 1) * 255` rounded. */
  rgb: Uint8Array;
  /** The safety checker's verdict, or null when it did not run. */
  nsfw: boolean | null;
}

export interface GenerationResult {
  images: GeneratedImage[];
  /** Final latents before VAE decoding, shape (n, 4, h, w). */
  latents: Float32Array;
  latentShape: LatentShape;
  scheduler: SchedulerName;
  /** Which denoising loop ran (see DeviceLoopMode). */
  loop: 'js' | 'device';
  /** A1111-style sampler name of what actually ran (e.g. "DPM++ 2M Karras", Karras included when the config set it). */
  sampler: string;
  timesteps: Float64Array;
  /** Prompt tokens beyond the encoder's context length, dropped as diffusers drops them (always 0 under `a1111`). */
  truncatedTokens: number;
  /** The prompt's length under the request's syntax, for "92/150 tokens" (formatTokenCount). */
  promptTokens: PromptTokenCount;
  /** The textual-inversion embeddings the prompts used, with their short hashes (png.ts `tiHashesInfotext`). */
  textualInversions: { name: string; hash: string }[];
  /** The prompt's LoRAs (a1111 syntax), in prompt order, for `Lora hashes`; empty when none. */
  loras: UsedLora[];
  timings: GenerationTimings;
}


function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/**
 * Initial noise: one draw of the whole (n, 4, h, w) tensor (row by row from each image's generator when there is one
 * per image), scaled by the scheduler's init_noise_sigma.
 */
function initialLatents(generator: NoiseGenerator, scheduler: Scheduler, count: number): Float32Array {
  const latents = generator.randn(count);
  if (scheduler.initNoiseSigma !== 1) for (let i = 0; i < count; i++) latents[i] = latents[i]! * scheduler.initNoiseSigma;
  return latents;
}

/**
 * Tells the caller about step `step` after it ran: `onStep` always, `onProgress` with the latents when `wantsLatents`
 * says so (only then are they fetched). The caller's errors come out marked as theirs (CallbackFailure).
 */
async function reportStep(
  options: GenerateOptions,
  info: StepInfo,
  shape: LatentShape,
  currentLatents: () => Promise<Float32Array>,
): Promise<void> {
  const { onStep, onProgress } = options;
  const wantsLatents = options.wantsLatents ?? (() => true);
  await CallbackFailure.wrap(() => onStep?.(info));
  if (onProgress && (await CallbackFailure.wrap(() => wantsLatents(info.step, info.totalSteps)))) {
    const latents = await currentLatents();
    await CallbackFailure.wrap(() => onProgress({ ...info, latents, shape }));
  }
}

/**
 * The denoising loop, as in diffusers: for each timestep, scale the latents for the UNet, predict the noise (both
 * guidance halves in one batch), combine the halves (guidance) and let the scheduler step, then tell the caller.
 * The stepper decides where guidance and the step run (steppers.ts); the caller's errors are marked as theirs, so
 * that `auto` does not take them for a device-loop failure.
 */
async function denoisingLoop(
  stepper: Stepper,
  { scheduler, generator, timesteps }: DenoiseStart,
  unet: UnetRunner,
  shape: LatentShape,
  options: GenerateOptions,
  timings: LoopTimings,
): Promise<Float32Array> {
  const { signal } = options;
  const totalSteps = timesteps.length;
  for (const [index, t] of timesteps.entries()) {
    throwIfAborted(signal);
    timings.beginStep();
    const { sample, encoderHiddenStates } = stepper.unetInputs(index, t); // scaleModelInput
    const run = await unet.run(sample, encoderHiddenStates, t, scheduler, generator); // UNet (step noise drawn meanwhile)
    timings.unetRan(run.runMs, run.drawMs);
    await stepper.step(run.output, t); // guidance + scheduler.step
    timings.endStep();

    await reportStep(options, { step: index + 1, totalSteps, timestep: t }, shape, () => stepper.currentLatents());
  }
  return stepper.finalLatents();
}

/**
 * Stable Diffusion text-to-image exactly as diffusers' StableDiffusionPipeline computes it, over ONNX Runtime.
 * One instance holds one loaded model and is shared by every job; `generate` calls must not overlap (the queue's
 * single worker guarantees that) unless the pipeline batches continuously (`maxBatchRows` > 1), when overlapping
 * calls share the UNet batch.
 */
export class StableDiffusionPipeline {
  readonly provider: ProviderName;
  readonly deviceLoop: DeviceLoopMode;
  /** Step graphs by UNet dtype, noise input and guidance, opened on first use and kept (they are tiny). */
  private readonly stepGraphs = new Map<string, Promise<DeviceStepper>>();
  private readonly reader: GpuTensorReader;
  private readonly uploader: GpuTensorUploader;
  private readonly log: (line: string) => void;
  private deviceLoopError: string | null = null;
  private readonly pinUnetShapes: boolean;
  /** The shared running batch when `maxBatchRows` > 1, else null. */
  readonly batcher: BatchedDenoiser | null;
  private readonly loraLibrary: LoraLibrary | null;
  private readonly loraSessions: LoraSessionCache;

  constructor(
    readonly model: StableDiffusionModel,
    options: PipelineOptions = {},
  ) {
    this.provider = options.provider ?? 'cpu';
    this.deviceLoop = options.deviceLoop ?? 'auto';
    this.log = options.log ?? (() => {});
    this.pinUnetShapes = options.pinUnetShapes ?? false;
    this.reader = new GpuTensorReader(this.provider);
    this.uploader = new GpuTensorUploader(this.provider);
    const maxBatchRows = options.maxBatchRows ?? 1;
    if (maxBatchRows > 1 && this.pinUnetShapes) this.log(`continuous batching is off: pinUnetShapes pins the UNet batch (maxBatchRows ${maxBatchRows} ignored)`);
    this.batcher = maxBatchRows > 1 && !this.pinUnetShapes ? new BatchedDenoiser(model.unet, maxBatchRows, this.reader) : null;
    this.loraLibrary = options.loras?.library ?? null;
    this.loraSessions = new LoraSessionCache((part, rewrite) => this.model.openPartWith(part, rewrite), options.loras?.cacheSize, this.log);
  }

  async generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationResult> {
    // 1. Check inputs
    validateRequest(request);
    const timings = new TimingRecorder();
    const { signal } = options;
    const batch = imageCountOf(request);
    // An LCM UNet takes the CFG scale as its guidance embedding (guidance-embedding.ts): one batch row per image.
    const embeddingDim = guidanceEmbeddingDim(this.model.unet);
    const guidance = request.cfg > 1 && embeddingDim === null;
    const latentShape = latentShapeOf(request, this.model.vaeScaleFactor);
    const latentCount = latentShape.reduce((product, dim) => product * dim, 1);

    // 2. Preprocess and VAE-encode the init image (img2img), deterministic: its sampling happens in 3.
    const { initImage } = request;
    // (Its time counts in timings.totalMs only: GenerationTimings' phases are those of text-to-image.)
    const image = initImage ? await this.encodeInitImage(initImage, request.width, request.height) : null;
    throwIfAborted(signal);

    // 3. Prepare timesteps (the scheduler), the noise generator and the initial latents: pure noise, or (img2img) the
    // image latents noised to the first timestep strength keeps
    const start = this.startDenoising(request, latentCount, image);
    throwIfAborted(signal);

    // 4. Encode the prompt (and the negative prompt, for guidance), with the prompt's LoRAs merged in (a1111)
    const syntax = request.promptSyntax ?? 'plain';
    const loras = await this.loraSetOf(request.prompt, syntax);
    const lora = await this.loraParts(loras.set, options);
    const parts = lora.parts;
    try {
      throwIfAborted(signal);
      const text = await timings.time('textEncoderMs', () =>
        encodeText(
          { tokenizer: this.model.tokenizer, embeddings: this.model.embeddings, textEncoder: parts.textEncoder ?? this.model.textEncoder },
          loras.prompt,
          request.negativePrompt ?? '',
          batch,
          guidance,
          syntax,
          request.clipSkip ?? 1,
        ),
      );

      // 5. Prepare the UNet's feeds (pinning its input shapes first when asked to; a LoRA-merged UNet is not pinned)
      const sampleDims = unetSampleDims(latentShape, guidance);
      if (this.pinUnetShapes && !parts.unet) {
        const embedding: Record<string, number[]> = embeddingDim === null ? {} : { [TIMESTEP_COND_INPUT]: [sampleDims[0]!, embeddingDim] };
        await this.pinUnetTo({ sample: sampleDims, timestep: [sampleDims[0]!], encoder_hidden_states: text.dims, ...embedding });
      }
      const unet = new UnetRunner(parts.unet ?? this.model.unet, latentCount, guidance, sampleDims, text, request.cfg);

      // 6. Denoising loop, on the device stepper or the JS one (see DeviceLoopMode), or, batching continuously, as one
      // row group of the shared running batch (batched-denoiser.ts)
      // A LoRA-merged UNet is another session: such a generation runs its own loop beside the batch.
      const inBatch = this.batcher !== null && parts.unet === null && (options.deviceLoop ?? this.deviceLoop) !== 'always';
      const denoised = await timings.time('denoiseMs', () =>
        inBatch ? this.denoiseInBatch(request, start, text, latentShape, options, timings) : this.denoise(request, start, image, unet, latentShape, options, timings),
      );

      // 7. Decode the latents with the VAE, one image at a time
      throwIfAborted(signal);
      const decoded = await timings.time('decodeMs', async () => {
        const images: DecodedImage[] = [];
        for (let i = 0; i < batch; i++) images.push(await this.decode(denoised.latents, latentShape, i));
        return images;
      });
      const images: GeneratedImage[] = decoded.map(({ rgb }, index) => ({ index, width: request.width, height: request.height, rgb, nsfw: null }));

      // 8. Run the safety checker
      await timings.time('safetyMs', async () => {
        if (!(request.safetyCheck ?? true) || !this.model.safetyChecker) return;
        for (const image of images) {
          throwIfAborted(signal);
          image.nsfw = await checkSafety(this.model.safetyChecker, image.rgb, decoded[image.index]!.float, image.width, image.height);
        }
      });

      return {
        images,
        latents: denoised.latents,
        latentShape,
        scheduler: start.scheduler.name,
        loop: denoised.loop,
        sampler: start.scheduler.displayName,
        timesteps: Float64Array.from(start.timesteps),
        truncatedTokens: text.promptTokens.droppedTokenCount,
        promptTokens: text.promptTokens,
        textualInversions: text.textualInversions,
        loras: loras.set.map(({ name, hash }) => ({ name, hash })),
        timings: timings.result(),
      };
    } finally {
      await lora.done();
    }
  }

  /**
   * The prompt without its extra-network tags and its LoRAs resolved to files (a1111 syntax; under `plain` the text
   * is taken literally). The same name twice adds its multipliers (A1111 applies both).
   */
  private async loraSetOf(prompt: string, syntax: PromptSyntax): Promise<{ prompt: string; set: ResolvedLora[] }> {
    if (syntax !== 'a1111') return { prompt, set: [] };
    const { text, loras, ignored } = extractExtraNetworks(prompt);
    if (ignored.length > 0) this.log(`extra networks other than LoRA are not supported, ignored: ${ignored.join(' ')}`);
    const set: ResolvedLora[] = [];
    for (const tag of loras) {
      const library = this.loraLibrary;
      if (!library) throw new UnknownLoraError(tag.name, []);
      const file = await library.resolve(tag.name);
      const same = set.find((lora) => lora.file === file.file);
      if (same) {
        same.teMultiplier += tag.teMultiplier;
        same.unetMultiplier += tag.unetMultiplier;
        continue;
      }
      set.push({ name: tag.name, file: file.file, hash: await library.hash(file.file), teMultiplier: tag.teMultiplier, unetMultiplier: tag.unetMultiplier });
    }
    return { prompt: text, set };
  }

  /** The text encoder and UNet with the set merged in (null: the base model's), from the cache or merged now. */
  private loraParts(set: readonly ResolvedLora[], options: GenerateOptions): Promise<{ parts: LoraParts; done: () => Promise<void> }> {
    // Multiplier 0 changes no weight: such a LoRA is only named in the infotext.
    const active = set.filter((lora) => lora.teMultiplier !== 0 || lora.unetMultiplier !== 0);
    if (active.length > 0 && !this.loraSessions.has(active)) options.onLoraLoad?.(active.map((lora) => lora.name));
    return this.loraSessions.acquire(active);
  }

  /**
   * Section 6 in the shared running batch: this generation joins it as one row group at the next step boundary and
   * leaves it after its last step; its guidance, scheduler and callbacks stay its own.
   */
  private async denoiseInBatch(
    request: GenerationRequest,
    start: DenoiseStart,
    text: TextConditioning,
    shape: LatentShape,
    options: GenerateOptions,
    timings: TimingRecorder,
  ): Promise<{ latents: Float32Array; loop: 'js' }> {
    // An LCM UNet takes the CFG scale as its per-row guidance embedding and runs one row per image (no guidance halves).
    const embeddingDim = guidanceEmbeddingDim(this.model.unet);
    const rowInputs: Record<string, Float32Array> = embeddingDim === null ? {} : { [TIMESTEP_COND_INPUT]: guidanceEmbeddingRows(request.cfg, embeddingDim, shape[0]) };
    const latents = await CallbackFailure.unwrap(() =>
      this.batcher!.denoise({
        start,
        text,
        cfg: embeddingDim === null ? request.cfg : 1,
        shape,
        rowInputs,
        timings: timings.startLoop(),
        ...(options.signal ? { signal: options.signal } : {}),
        afterStep: (step, totalSteps, timestep, current) => reportStep(options, { step, totalSteps, timestep }, shape, async () => current),
      }),
    );
    return { latents, loop: 'js' };
  }

  /**
   * A fresh scheduler with its timesteps set, the noise source seeded from the request (one generator, or one per
   * image, rng/per-image.ts) and the initial latents: noise × init_noise_sigma over every timestep, or for img2img
   * the tail of the timesteps strength keeps and the image latents noised to its first (img2img.ts).
   */
  private startDenoising(request: GenerationRequest, latentCount: number, image: LatentDistribution | null): DenoiseStart {
    const scheduler = this.createScheduler(request);
    scheduler.setTimesteps(request.steps);
    const generator = createImageNoise(request.rng ?? 'cpu', request.seed);
    if (image === null || request.initImage === undefined) {
      return { scheduler, generator, timesteps: scheduler.timesteps, latents: initialLatents(generator, scheduler, latentCount) };
    }
    return img2imgStart(scheduler, generator, image, {
      steps: request.steps,
      strength: request.initImage.strength,
      count: imageCountOf(request),
      perImageGenerators: typeof request.seed !== 'bigint',
      scalingFactor: this.model.vaeScalingFactor,
    });
  }

  /** The init image read, resized to the request's size and VAE-encoded to its latent distribution (vae-encode.ts). */
  private async encodeInitImage(initImage: InitImage, width: number, height: number): Promise<LatentDistribution> {
    const encoder = await this.model.openVaeEncoder();
    const pixels = await preprocessInitImage(initImage.data, width, height);
    return encodeLatentDistribution(encoder, this.model.vaeScaleFactor, pixels, width, height);
  }

  /** Runs the loop on the stepper the mode picks; under `auto`, a failed device loop starts over on the JS stepper. */
  private async denoise(
    request: GenerationRequest,
    start: DenoiseStart,
    image: LatentDistribution | null,
    unet: UnetRunner,
    shape: LatentShape,
    options: GenerateOptions,
    timings: TimingRecorder,
  ): Promise<{ latents: Float32Array; loop: 'js' | 'device' }> {
    const mode = options.deviceLoop ?? this.deviceLoop;
    const run = async (makeStepper: (loopTimings: LoopTimings) => Promise<Stepper>, from: DenoiseStart) => {
      const loopTimings = timings.startLoop();
      const stepper = await makeStepper(loopTimings);
      try {
        return { latents: await denoisingLoop(stepper, from, unet, shape, options, loopTimings), loop: stepper.loop };
      } finally {
        stepper.dispose();
      }
    };
    const onJs = (from: DenoiseStart) => run(async () => new JsStepper(from, unet, new CpuGuidance(unet, request.cfg, this.reader)), from);
    if (!this.usesDeviceLoop(start.scheduler, mode)) return CallbackFailure.unwrap(() => onJs(start));
    const onDevice = () => run((loopTimings) => this.openDeviceStepper(start, unet, request.cfg, shape, loopTimings), start);
    return CallbackFailure.unwrap(() =>
      withJsFallback(
        mode,
        onDevice,
        // Start over: the scheduler and the generator have advanced. Same request, same stream, same image.
        () => onJs(this.startDenoising(request, unet.latentCount, image)),
        (reason) => {
          this.deviceLoopError = reason;
          this.log(`device loop failed on ${this.provider} (${reason}); using the JS loop from now on`);
        },
      ),
    );
  }

  private openDeviceStepper(start: DenoiseStart, unet: UnetRunner, cfg: number, shape: LatentShape, timings: LoopTimings): Promise<DeviceLoopStepper> {
    const dtype = this.stepGraphDtype();
    if (dtype === null) throw new Error('the UNet\'s sample input and output differ in type');
    return DeviceLoopStepper.open(start, unet, {
      reader: this.reader,
      uploader: this.uploader,
      stepGraph: (withNoise) => this.stepGraph(dtype, withNoise, unet.guidance),
      cfg,
      shape,
      timings,
    });
  }

  private async pinUnetTo(shapes: Record<string, readonly number[]>): Promise<void> {
    const started = performance.now();
    if (!(await this.model.pinUnetShapes(shapes))) return;
    const described = Object.entries(shapes)
      .map(([name, dims]) => `${name} [${dims.join(', ')}]`)
      .join(', ');
    this.log(`UNet reopened with its inputs pinned to ${described} in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  }

  /** Releases the pipeline's own small sessions (step graphs, read-back/upload helpers); the model is released apart. */
  async release(): Promise<void> {
    const graphs = [...this.stepGraphs.values()];
    this.stepGraphs.clear();
    for (const graph of graphs) await (await graph.catch(() => null))?.release();
    await this.reader.release();
    await this.uploader.release();
    await this.loraSessions.release();
  }

  /** Why `auto` stopped using the device loop (it failed once on this provider), or null. */
  get deviceLoopFailure(): string | null {
    return this.deviceLoopError;
  }

  /** Whether a generation with this scheduler runs the device loop, given the mode and the UNet's dtypes. */
  usesDeviceLoop(scheduler: Scheduler, mode: DeviceLoopMode = this.deviceLoop): boolean {
    if (mode === 'never') return false;
    if (mode === 'auto' && (!keepsOutputsOnDevice(this.provider) || this.deviceLoopError !== null)) return false;
    if (!supportsLinearStep(scheduler)) return false;
    return this.stepGraphDtype() !== null;
  }

  /** The step graph takes the UNet's output and feeds its sample input: both must be the same float type. */
  private stepGraphDtype(): 'float32' | 'float16' | null {
    const unet = this.model.unet;
    const input = unet.inputs.get('sample')?.dtype;
    const output = unet.outputs.get(unet.session.outputNames[0]!)?.dtype;
    if ((input === 'float32' || input === 'float16') && input === output) return input;
    return null;
  }

  private stepGraph(dtype: 'float32' | 'float16', withNoise: boolean, withGuidance: boolean): Promise<DeviceStepper> {
    const key = `${dtype}/${withNoise}/${withGuidance}`;
    let graph = this.stepGraphs.get(key);
    if (!graph) {
      graph = DeviceStepper.open(this.provider, dtype, { withNoise, withGuidance, keepOnDevice: keepsOutputsOnDevice(this.provider) });
      // A failed open is not cached, so the next generation tries again.
      graph.catch(() => this.stepGraphs.delete(key));
      this.stepGraphs.set(key, graph);
    }
    return graph;
  }

  /** The scheduler the model's own config names, used when a request names none. */
  createScheduler(request: Pick<GenerationRequest, 'scheduler' | 'karras' | 'timestepSpacing'>): Scheduler {
    return createScheduler(request.scheduler, this.model.schedulerConfig, {
      karras: request.karras,
      timestepSpacing: request.timestepSpacing,
    });
  }

  /** Text embeddings for [negative × n, prompt × n] (or prompt × n without guidance), flat, plus their dims. */
  encodeText(prompt: string, negativePrompt: string, batch: number, withGuidance: boolean, syntax: PromptSyntax = 'plain', clipSkip = 1): Promise<TextConditioning> {
    return encodeText(this.model, prompt, negativePrompt, batch, withGuidance, syntax, clipSkip);
  }

  /**
   * VAE-decodes image `index` and post-processes as diffusers (vae-decode.ts). Returns 8-bit RGB and the float image
   * (HWC).
   */
  decode(latents: Float32Array, shape: LatentShape, index: number): Promise<DecodedImage> {
    return decodeLatents(this.model, latents, shape, index);
  }

  /**
   * Runs one short generation (2 steps, empty prompt) in the shape of the jobs to come, so the first real job does not
   * pay for what happens once per session and shape: WebGPU compiles its shaders, cuDNN benchmarks its convolution
   * algorithms, ORT plans its memory, the device loop opens its step graph, `pinUnetShapes` pins the UNet, and a
   * device loop the provider rejects is found and swapped for the JS loop. Resolves to the seconds it took.
   */
  async warmUp(shape: Pick<GenerationRequest, 'width' | 'height' | 'cfg' | 'batch' | 'scheduler' | 'safetyCheck' | 'promptSyntax'>): Promise<number> {
    const started = performance.now();
    await this.generate({ ...shape, prompt: '', seed: 0n, steps: 2 });
    const seconds = (performance.now() - started) / 1000;
    const batch = shape.batch ?? 1;
    this.log(`warmed up in ${seconds.toFixed(1)}s (${shape.width}×${shape.height}, ${batch} image${batch === 1 ? '' : 's'}, cfg ${shape.cfg})`);
    return seconds;
  }
}
