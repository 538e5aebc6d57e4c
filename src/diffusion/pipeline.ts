import * as ort from 'onnxruntime-node';
import { CancelledError, InvalidRequestError } from './errors.js';
import type { ModelPart, StableDiffusionModel } from './model.js';
import { createNoiseGenerator } from './rng/index.js';
import { MAX_SEED, type NoiseGenerator, type RngDevice } from './rng/types.js';
import { createScheduler } from './schedulers/index.js';
import { supportsLinearStep, type Scheduler, type SchedulerName, type TimestepSpacing } from './schedulers/types.js';
import { checkSafety } from './safety.js';
import { roundHalfEven } from './numeric.js';
import { halfToFloatValues, toFloat16Into } from './fp16.js';
import { DeviceStepper } from './device-step.js';
import { GpuTensorReader, GpuTensorUploader, keepsOutputsOnDevice, type ProviderName } from './providers.js';
import { floatsFromData, readFloats, TensorFeeder } from './tensors.js';

export interface GenerationRequest {
  prompt: string;
  /** Empty string when none, as diffusers does for the unconditional half. */
  negativePrompt?: string;
  seed: bigint;
  steps: number;
  /** Classifier-free guidance scale; ≤ 1 runs the UNet on the prompt alone, as diffusers does. */
  cfg: number;
  width: number;
  height: number;
  /** Defaults to the scheduler named by the model's scheduler_config.json. */
  scheduler?: SchedulerName;
  karras?: boolean;
  timestepSpacing?: TimestepSpacing;
  /** Which torch generator the noise reproduces (default cpu, as diffusers recommends for reproducibility). */
  rng?: RngDevice;
  /** Images per prompt, drawn from one generator as one (n, 4, h, w) tensor, like diffusers' num_images_per_prompt. */
  batch?: number;
  /** Run the model's safety checker when it has one (default true). */
  safetyCheck?: boolean;
}

export type LatentShape = readonly [number, number, number, number];

export interface StepProgress {
  /** 1-based index of the step just finished. */
  step: number;
  totalSteps: number;
  timestep: number;
  /** Latents after this step; valid only during the callback (copy to keep). */
  latents: Float32Array;
  shape: LatentShape;
}

/**
 * Which denoising loop runs:
 * - the JS loop: guidance and the scheduler step in JS on CPU arrays (every scheduler; on WebGPU it reads the UNet
 *   output back every step);
 * - the device loop: guidance and the step as a tiny ONNX graph on the UNet's execution provider (device-step.ts), fed
 *   with coefficients from `Scheduler.linearStep`, so on WebGPU latents stay on the GPU between steps and are read back
 *   only for previews and the final decode. Only for schedulers with `linearStep` (euler, euler_a, ddim without
 *   clip_sample).
 *
 * `auto` (default) takes the device loop where the provider keeps outputs on the device (webgpu) and the scheduler
 * can; `always` takes it on any provider when the scheduler can (so it can be tested on the CPU), and otherwise falls
 * back to the JS loop (reported as `loop: 'js'` in the result; PNDM, DPM++ 2M and LMS are multistep); `never` always
 * runs the JS loop. Should the device loop fail under `auto` (it is an optimisation, unproven on some GPU stacks), the
 * generation starts over on the JS loop, the pipeline logs why, and later generations keep to the JS loop; under
 * `always` the error is the generation's.
 */
export type DeviceLoopMode = 'auto' | 'always' | 'never';
export const DEVICE_LOOP_MODES: readonly DeviceLoopMode[] = ['auto', 'always', 'never'];

export interface PipelineOptions {
  /** The execution provider the model's sessions run on (default cpu); decides what `deviceLoop: 'auto'` does. */
  provider?: ProviderName;
  /** Default for every generation (default auto). */
  deviceLoop?: DeviceLoopMode;
  /** Where to say that the device loop failed and `auto` switched to the JS loop (one line). */
  log?: (line: string) => void;
  /**
   * Pin the UNet's input shapes to each generation's (batch, size, prompt length): the UNet is reopened whenever they
   * change, which takes as long as loading it (seconds on a GPU), and runs with the export's shape arithmetic folded
   * away (pin-shapes.ts). Worth it where sizes rarely change; measured by `npm run bench:gpu` (default false).
   */
  pinUnetShapes?: boolean;
}

export interface StepInfo {
  /** 1-based index of the step just finished. */
  step: number;
  totalSteps: number;
  timestep: number;
}

/**
 * A progress step counted in the steps the caller asked for. PNDM makes steps + 1 UNet calls (its first timestep
 * repeats), so its UNet call k of n maps onto 1…requestedSteps: never "step 31/30".
 */
export function requestedStepOf(step: number, totalSteps: number, requestedSteps: number): number {
  return Math.max(1, Math.round((step * requestedSteps) / totalSteps));
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
  /** Prompt tokens beyond the encoder's context length, dropped as diffusers drops them. */
  truncatedTokens: number;
  timings: {
    textEncoderMs: number;
    denoiseMs: number;
    /**
     * Time inside the UNet's session.run over all steps. (On WebGPU with outputs left on the GPU, run may return once
     * the work is queued; the wait then shows up in whichever run or read-back comes next.)
     */
    unetMs: number;
    /**
     * Denoising time spent in Node on the critical path, outside session.run (input prep, guidance, scheduler step;
     * in the device loop: the step's coefficients and tensor bookkeeping), callbacks excluded. In the JS loop on
     * WebGPU it includes reading the UNet output back.
     */
    nodeStepMs: number;
    /** Device loop: time inside the step graph's session.run (guidance + scheduler update); 0 in the JS loop. */
    stepGraphMs: number;
    /** Device loop: time reading latents back to the CPU for previews and the final decode; 0 in the JS loop. */
    readBackMs: number;
    /** Node work done while session.run was in flight (ancestral step noise): hidden behind a UNet slower than it. */
    overlappedMs: number;
    /** nodeStepMs step by step, for medians (a GC pause lands on one step). */
    nodeStepMsPerStep: number[];
    decodeMs: number;
    safetyMs: number;
    totalMs: number;
  };
}

export const DEFAULT_STEPS = 30;
export const DEFAULT_CFG = 7;
export const MAX_BATCH = 8;
export const MAX_STEPS = 1000;
const MAX_PIXELS = 2048 * 2048;

/** Checks a request before any work starts, so every mistake is one clear sentence. */
export function validateRequest(request: GenerationRequest): void {
  const { width, height, steps, cfg } = request;
  const batch = request.batch ?? 1;
  for (const [label, value] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(value) || value <= 0) throw new InvalidRequestError(`${label} must be a positive whole number of pixels (got ${value}).`);
    if (value % 8 !== 0) throw new InvalidRequestError(`${label} must be a multiple of 8 (got ${value}).`);
    if (value < 64) throw new InvalidRequestError(`${label} must be at least 64 pixels (got ${value}).`);
  }
  if (width * height > MAX_PIXELS) throw new InvalidRequestError(`${width}x${height} is too large (at most ${MAX_PIXELS} pixels).`);
  if (!Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS) throw new InvalidRequestError(`steps must be a whole number from 1 to ${MAX_STEPS} (got ${steps}).`);
  if (!Number.isFinite(cfg) || cfg < 0 || cfg > 100) throw new InvalidRequestError(`cfg must be a number from 0 to 100 (got ${cfg}).`);
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) throw new InvalidRequestError(`batch must be a whole number from 1 to ${MAX_BATCH} (got ${batch}).`);
  if (typeof request.seed !== 'bigint' || request.seed < 0n || request.seed > MAX_SEED) throw new InvalidRequestError(`seed must be a whole number from 0 to ${MAX_SEED}.`);
  if (typeof request.prompt !== 'string') throw new InvalidRequestError('prompt must be text.');
}

function firstOutput(part: ModelPart, outputs: ort.InferenceSession.OnnxValueMapType): ort.Tensor {
  const name = part.session.outputNames[0]!;
  return outputs[name] as ort.Tensor;
}

/**
 * The UNet input for one step: the scaled latents (narrowed to float16 for fp16 UNets), copied into the second half
 * of the batch for guidance rather than narrowed twice.
 */
function writeUnetInput(scaled: Float32Array, unetInput: Float32Array | Uint16Array, latentCount: number, guidance: boolean): void {
  if (unetInput instanceof Float32Array) unetInput.set(scaled, 0);
  else toFloat16Into(scaled, unetInput);
  if (guidance) unetInput.copyWithin(latentCount, 0, latentCount);
}

/**
 * Runs the UNet; while it runs on ONNX Runtime's threads, draws this step's noise (ancestral schedulers) from the
 * same generator, in the same order as the step would, so it costs nothing when the UNet is the slower one.
 * `runMs` is the wall time of the run (the draw included); `drawMs` the draw alone.
 */
async function runUnetDrawingNoise(
  unet: ModelPart,
  feeds: ort.InferenceSession.FeedsType,
  scheduler: Scheduler,
  generator: NoiseGenerator,
  latentCount: number,
): Promise<{ outputs: ort.InferenceSession.OnnxValueMapType; runMs: number; drawMs: number }> {
  const runStarted = performance.now();
  const running = unet.session.run(feeds);
  let drawMs = 0;
  if (scheduler.prepareStep) {
    const drawStarted = performance.now();
    scheduler.prepareStep(generator, latentCount);
    drawMs = performance.now() - drawStarted;
  }
  const outputs = await running;
  return { outputs, runMs: performance.now() - runStarted, drawMs };
}

/** noise = uncond + cfg · (cond − uncond); the first half of the UNet batch is the unconditional one. */
function applyGuidance(noise: Float32Array, into: Float32Array, count: number, cfg: number): void {
  for (let i = 0; i < count; i++) {
    const uncond = noise[i]!;
    into[i] = uncond + cfg * (noise[count + i]! - uncond);
  }
}

/** applyGuidance for a float16 UNet output (raw halves), widening each half exactly through a lookup table. */
function applyGuidanceToHalves(noise: Uint16Array, into: Float32Array, count: number, cfg: number): void {
  const widen = halfToFloatValues();
  for (let i = 0; i < count; i++) {
    const uncond = widen[noise[i]!]!;
    into[i] = uncond + cfg * (widen[noise[count + i]!]! - uncond);
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/** Initial noise: one draw of the whole (n, 4, h, w) tensor, scaled by the scheduler's init_noise_sigma. */
function initialLatents(generator: NoiseGenerator, scheduler: Scheduler, count: number): Float32Array {
  const latents = generator.randn(count);
  if (scheduler.initNoiseSigma !== 1) for (let i = 0; i < count; i++) latents[i] = latents[i]! * scheduler.initNoiseSigma;
  return latents;
}

/** An error thrown by the caller's callback inside the device loop, carried out unchanged (see `generate`). */
class CallbackFailure {
  constructor(readonly error: unknown) {}

  static async wrap<T>(callback: () => T | Promise<T>): Promise<T> {
    try {
      return await callback();
    } catch (error) {
      throw new CallbackFailure(error);
    }
  }
}

/** What both denoising loops start from (made once per generation by `generate`). */
interface DenoiseLoop {
  scheduler: Scheduler;
  generator: NoiseGenerator;
  /** The initial latents, already scaled by initNoiseSigma. */
  latents: Float32Array;
  latentShape: LatentShape;
  latentCount: number;
  guidance: boolean;
  cfg: number;
  /** The buffer behind `sampleTensor`. */
  unetInput: Float32Array | Uint16Array;
  sampleTensor: ort.Tensor;
  timestepFeed: TensorFeeder;
  textTensor: ort.Tensor;
  options: GenerateOptions;
}

interface DenoiseOutcome {
  /** Final latents, a copy the caller owns. */
  latents: Float32Array;
  unetMs: number;
  overlappedMs: number;
  nodeStepMsPerStep: number[];
  stepGraphMs: number;
  readBackMs: number;
}

/**
 * Stable Diffusion text-to-image exactly as diffusers' StableDiffusionPipeline computes it, over ONNX Runtime.
 * One instance holds one loaded model and is shared by every job; `generate` calls must not overlap (the queue's
 * single worker guarantees that).
 */
export class StableDiffusionPipeline {
  readonly provider: ProviderName;
  readonly deviceLoop: DeviceLoopMode;
  /** Step graphs by UNet dtype, noise input and guidance, opened on first use and kept (they are tiny). */
  private readonly steppers = new Map<string, Promise<DeviceStepper>>();
  private readonly reader: GpuTensorReader;
  private readonly uploader: GpuTensorUploader;
  private readonly log: (line: string) => void;
  private deviceLoopError: string | null = null;
  private readonly pinUnetShapes: boolean;

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
    const steppers = [...this.steppers.values()];
    this.steppers.clear();
    for (const stepper of steppers) await (await stepper.catch(() => null))?.release();
    await this.reader.release();
    await this.uploader.release();
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

  private stepper(dtype: 'float32' | 'float16', withNoise: boolean, withGuidance: boolean): Promise<DeviceStepper> {
    const key = `${dtype}/${withNoise}/${withGuidance}`;
    let stepper = this.steppers.get(key);
    if (!stepper) {
      stepper = DeviceStepper.open(this.provider, dtype, { withNoise, withGuidance, keepOnDevice: keepsOutputsOnDevice(this.provider) });
      // A failed open is not cached, so the next generation tries again.
      stepper.catch(() => this.steppers.delete(key));
      this.steppers.set(key, stepper);
    }
    return stepper;
  }

  /** The scheduler the model's own config names, used when a request names none. */
  createScheduler(request: Pick<GenerationRequest, 'scheduler' | 'karras' | 'timestepSpacing'>): Scheduler {
    return createScheduler(request.scheduler, this.model.schedulerConfig, {
      karras: request.karras,
      timestepSpacing: request.timestepSpacing,
    });
  }

  /** Text embeddings for [negative × n, prompt × n] (or prompt × n without guidance), flat, plus their dims. */
  async encodeText(prompt: string, negativePrompt: string, batch: number, withGuidance: boolean): Promise<{ embeddings: Float32Array; dims: number[] }> {
    const { tokenizer, textEncoder } = this.model;
    const rows = withGuidance ? [tokenizer.encode(negativePrompt), tokenizer.encode(prompt)] : [tokenizer.encode(prompt)];
    const ids = TensorFeeder.forInput(textEncoder.session, 'input_ids', [rows.length, tokenizer.maxLength]);
    const flatIds = new Int32Array(rows.length * tokenizer.maxLength);
    rows.forEach((row, r) => flatIds.set(row, r * tokenizer.maxLength));
    const outputs = await textEncoder.session.run({ input_ids: ids.setInts(flatIds) });
    const hidden = firstOutput(textEncoder, outputs);
    const [rowCount, sequence, width] = hidden.dims as [number, number, number];
    const perRow = sequence * width;
    const encoded = readFloats(hidden, new Float32Array(rowCount * perRow));
    // Repeat each row n times: [neg × n, prompt × n], the order diffusers concatenates for guidance.
    const embeddings = new Float32Array(rowCount * batch * perRow);
    for (let r = 0; r < rowCount; r++) {
      const row = encoded.subarray(r * perRow, (r + 1) * perRow);
      for (let i = 0; i < batch; i++) embeddings.set(row, (r * batch + i) * perRow);
    }
    return { embeddings, dims: [rowCount * batch, sequence, width] };
  }

  /**
   * Runs one short generation (2 steps, empty prompt) in the shape of the jobs to come, so the first real job does not
   * pay for what happens once per session and shape: WebGPU compiles its shaders, cuDNN benchmarks its convolution
   * algorithms, ORT plans its memory, the device loop opens its step graph, `pinUnetShapes` pins the UNet, and a
   * device loop the provider rejects is found and swapped for the JS loop. Resolves to the seconds it took.
   */
  async warmUp(shape: Pick<GenerationRequest, 'width' | 'height' | 'cfg' | 'batch' | 'scheduler' | 'safetyCheck'>): Promise<number> {
    const started = performance.now();
    await this.generate({ ...shape, prompt: '', seed: 0n, steps: 2 });
    const seconds = (performance.now() - started) / 1000;
    const batch = shape.batch ?? 1;
    this.log(`warmed up in ${seconds.toFixed(1)}s (${shape.width}×${shape.height}, ${batch} image${batch === 1 ? '' : 's'}, cfg ${shape.cfg})`);
    return seconds;
  }

  async generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationResult> {
    validateRequest(request);
    const started = performance.now();
    const { signal } = options;
    const batch = request.batch ?? 1;
    const guidance = request.cfg > 1;
    const { model } = this;
    const latentHeight = request.height / model.vaeScaleFactor;
    const latentWidth = request.width / model.vaeScaleFactor;
    const latentShape: LatentShape = [batch, 4, latentHeight, latentWidth];
    const latentCount = batch * 4 * latentHeight * latentWidth;

    const scheduler = this.createScheduler(request);
    scheduler.setTimesteps(request.steps);
    const generator: NoiseGenerator = createNoiseGenerator(request.rng ?? 'cpu', request.seed);
    throwIfAborted(signal);

    const textStarted = performance.now();
    const text = await this.encodeText(request.prompt, request.negativePrompt ?? '', batch, guidance);
    const textEncoderMs = performance.now() - textStarted;

    const latents = initialLatents(generator, scheduler, latentCount);

    const unetBatch = guidance ? 2 * batch : batch;
    const sampleDims = [unetBatch, 4, latentHeight, latentWidth];
    if (this.pinUnetShapes) await this.pinUnetTo({ sample: sampleDims, timestep: [unetBatch], encoder_hidden_states: text.dims });
    const unet = model.unet;
    // Feeds in the dtypes the UNet's metadata declares (float16 for fp16 exports), allocated once per generation.
    const sampleDtype = unet.inputs.get('sample')!.dtype;
    if (sampleDtype !== 'float32' && sampleDtype !== 'float16') throw new InvalidRequestError(`unet sample input has type ${sampleDtype}; float32 or float16 expected.`);
    // The UNet reads our buffer directly (no copy per step). For fp16 the latents are narrowed once and the half
    // copied for the guidance batch, rather than narrowing the same values twice.
    const unetInput = sampleDtype === 'float32' ? new Float32Array(unetBatch * (latentCount / batch)) : new Uint16Array(unetBatch * (latentCount / batch));
    const sampleTensor = new ort.Tensor(sampleDtype, unetInput, sampleDims);
    const timestepFeed = TensorFeeder.forInput(unet.session, 'timestep', [unetBatch]);
    const textTensor = TensorFeeder.forInput(unet.session, 'encoder_hidden_states', text.dims).setFloats(text.embeddings);
    const loop: DenoiseLoop = {
      scheduler,
      generator,
      latents,
      latentShape,
      latentCount,
      guidance,
      cfg: request.cfg,
      unetInput,
      sampleTensor,
      timestepFeed,
      textTensor,
      options,
    };

    const denoiseStarted = performance.now();
    const mode = options.deviceLoop ?? this.deviceLoop;
    let useDevice = this.usesDeviceLoop(scheduler, mode);
    let denoised: DenoiseOutcome;
    if (!useDevice) denoised = await this.denoiseInJs(loop);
    else {
      try {
        denoised = await this.denoiseOnDevice(loop);
      } catch (failure) {
        if (failure instanceof CallbackFailure) throw failure.error;
        if (failure instanceof CancelledError || mode !== 'auto') throw failure;
        this.deviceLoopError = failure instanceof Error ? (failure.message.split('\n')[0] ?? failure.message) : String(failure);
        this.log(`device loop failed on ${this.provider} (${this.deviceLoopError}); using the JS loop from now on`);
        // Start over: the scheduler and the generator have advanced. Same request, same stream, same image.
        useDevice = false;
        const restart = this.createScheduler(request);
        restart.setTimesteps(request.steps);
        const restartGenerator = createNoiseGenerator(request.rng ?? 'cpu', request.seed);
        const restartLatents = initialLatents(restartGenerator, restart, latentCount);
        denoised = await this.denoiseInJs({ ...loop, scheduler: restart, generator: restartGenerator, latents: restartLatents });
      }
    }
    const denoiseMs = performance.now() - denoiseStarted;
    const { unetMs, overlappedMs, nodeStepMsPerStep, stepGraphMs, readBackMs } = denoised;
    const nodeStepMs = nodeStepMsPerStep.reduce((sum, ms) => sum + ms, 0);
    const sampler = scheduler.displayName;
    const timesteps = scheduler.timesteps;
    const finalLatents = denoised.latents;

    throwIfAborted(signal);
    const decodeStarted = performance.now();
    const images: GeneratedImage[] = [];
    const floatImages: Float32Array[] = [];
    for (let i = 0; i < batch; i++) {
      const { rgb, float } = await this.decode(finalLatents, latentShape, i);
      images.push({ index: i, width: request.width, height: request.height, rgb, nsfw: null });
      floatImages.push(float);
    }
    const decodeMs = performance.now() - decodeStarted;

    const safetyStarted = performance.now();
    if ((request.safetyCheck ?? true) && model.safetyChecker) {
      for (const image of images) {
        throwIfAborted(signal);
        image.nsfw = await checkSafety(model.safetyChecker, image.rgb, floatImages[image.index]!, image.width, image.height);
      }
    }
    const safetyMs = performance.now() - safetyStarted;

    return {
      images,
      latents: finalLatents,
      latentShape,
      scheduler: scheduler.name,
      loop: useDevice ? 'device' : 'js',
      sampler,
      timesteps: Float64Array.from(timesteps),
      truncatedTokens: model.tokenizer.truncatedTokenCount(request.prompt),
      timings: {
        textEncoderMs,
        denoiseMs,
        unetMs,
        nodeStepMs,
        overlappedMs,
        nodeStepMsPerStep,
        stepGraphMs,
        readBackMs,
        decodeMs,
        safetyMs,
        totalMs: performance.now() - started,
      },
    };
  }

  /**
   * The JS loop: scaleModelInput → UNet → guidance → scheduler.step, on CPU arrays. Every scheduler; on WebGPU
   * (a UNet opened with its output on the GPU) the output is read back each step.
   */
  private async denoiseInJs(loop: DenoiseLoop): Promise<DenoiseOutcome> {
    const { scheduler, generator, latentShape, latentCount, guidance, cfg, unetInput, sampleTensor, timestepFeed, textTensor } = loop;
    const { signal, onProgress, onStep } = loop.options;
    const wantsLatents = loop.options.wantsLatents ?? (() => true);
    const unet = this.model.unet;
    let latents = loop.latents;
    const halfOutput = new Float32Array(unetInput.length);
    const guided = guidance ? new Float32Array(latentCount) : null;
    let unetMs = 0;
    let overlappedMs = 0;
    const timesteps = scheduler.timesteps;
    const nodeStepMsPerStep: number[] = [];
    for (let index = 0; index < timesteps.length; index++) {
      throwIfAborted(signal);
      const stepStarted = performance.now();
      const t = timesteps[index]!;
      writeUnetInput(scheduler.scaleModelInput(latents, t), unetInput, latentCount, guidance);
      // Integer timestep inputs take t truncated, as numpy's astype does in diffusers' ONNX pipeline.
      const feeds = { sample: sampleTensor, timestep: timestepFeed.fill(t), encoder_hidden_states: textTensor };
      const run = await runUnetDrawingNoise(unet, feeds, scheduler, generator, latentCount);
      const { outputs, runMs } = run;
      unetMs += runMs;
      overlappedMs += run.drawMs;
      // A float32 output is used where ORT put it (a fresh array each run); float16 is widened into a reused buffer.
      const output = firstOutput(unet, outputs);
      let noise: Float32Array | null = null;
      if (output.location === 'gpu-buffer') {
        noise = floatsFromData(await this.reader.read(output), output.type, halfOutput);
        output.dispose();
      } else if (output.type === 'float32') {
        noise = output.data as Float32Array;
      } else if (!guided) {
        noise = readFloats(output, halfOutput);
      }
      // An fp16 output goes straight from halves to guided floats: one pass instead of widening the batch first.
      if (guided) {
        if (noise) applyGuidance(noise, guided, latentCount, cfg);
        else applyGuidanceToHalves(output.data as Uint16Array, guided, latentCount, cfg);
      }
      latents = scheduler.step(guided ?? noise!, t, latents, generator);
      nodeStepMsPerStep.push(performance.now() - stepStarted - runMs);
      onStep?.({ step: index + 1, totalSteps: timesteps.length, timestep: t });
      if (onProgress && wantsLatents(index + 1, timesteps.length)) {
        await onProgress({ step: index + 1, totalSteps: timesteps.length, timestep: t, latents, shape: latentShape });
      }
    }
    return { latents: Float32Array.from(latents), unetMs, overlappedMs, nodeStepMsPerStep, stepGraphMs: 0, readBackMs: 0 };
  }

  /**
   * The device loop: UNet → step graph (guidance + `linearStep`'s update, on the UNet's provider) → UNet …, the step
   * graph's outputs (next latents, next UNet input) fed straight back. On WebGPU both stay on the GPU; latents come
   * back to the CPU only for `onProgress` on the steps `wantsLatents` picks, and once at the end for the VAE.
   * Only the first UNet input is made on the CPU (`scaleModelInput` of the initial noise). Euler a's per-step noise is
   * drawn on the CPU from the same generator as in the JS loop (while the UNet runs) and goes in as an input.
   */
  private async denoiseOnDevice(loop: DenoiseLoop): Promise<DenoiseOutcome> {
    const { generator, latentShape, latentCount, guidance, cfg, unetInput, sampleTensor, timestepFeed } = loop;
    const { signal, onProgress, onStep } = loop.options;
    const wantsLatents = loop.options.wantsLatents ?? (() => true);
    const scheduler = loop.scheduler;
    if (!supportsLinearStep(scheduler)) throw new Error(`${scheduler.name} has no linear step`);
    const dtype = this.stepGraphDtype();
    if (dtype === null) throw new Error('the UNet\'s sample input and output differ in type');
    const unet = this.model.unet;
    const timesteps = scheduler.timesteps;
    const nodeStepMsPerStep: number[] = [];
    let unetMs = 0;
    let overlappedMs = 0;
    let stepGraphMs = 0;
    let readBackMs = 0;

    // Tensors that may live on the GPU; each is disposed once the next step has consumed it.
    const onDevice = (tensor: ort.Tensor | null): ort.Tensor | null => (tensor?.location === 'gpu-buffer' ? tensor : null);
    const hidden = await this.uploader.upload(loop.textTensor);
    let sample: ort.Tensor = sampleTensor;
    let latents: ort.Tensor = new ort.Tensor('float32', loop.latents, [...latentShape]);
    let prediction: ort.Tensor | null = null;
    try {
      for (let index = 0; index < timesteps.length; index++) {
        throwIfAborted(signal);
        const stepStarted = performance.now();
        const t = timesteps[index]!;
        if (index === 0) writeUnetInput(scheduler.scaleModelInput(loop.latents, t), unetInput, latentCount, guidance);
        const feeds = { sample, timestep: timestepFeed.fill(t), encoder_hidden_states: hidden };
        const run = await runUnetDrawingNoise(unet, feeds, scheduler, generator, latentCount);
        const { outputs, runMs } = run;
        unetMs += runMs;
        overlappedMs += run.drawMs;
        prediction = firstOutput(unet, outputs);

        const linear = scheduler.linearStep(t, latentCount, generator);
        const noise = linear.noiseValues ? new ort.Tensor('float32', linear.noiseValues, [...latentShape]) : undefined;
        const stepper = await this.stepper(dtype, noise !== undefined, guidance);
        const graphStarted = performance.now();
        const next = await stepper.step(
          prediction,
          latents,
          { latents: linear.latents, prediction: linear.prediction, guidance: cfg, noise: linear.noise, nextInputScale: linear.nextInputScale },
          noise,
        );
        const graphMs = performance.now() - graphStarted;
        stepGraphMs += graphMs;
        onDevice(prediction)?.dispose();
        prediction = null;
        onDevice(sample)?.dispose();
        onDevice(latents)?.dispose();
        sample = next.sample;
        latents = next.latents;
        nodeStepMsPerStep.push(performance.now() - stepStarted - runMs - graphMs);
        // The caller's errors are theirs: marked so that `auto` does not take them for a device-loop failure.
        await CallbackFailure.wrap(() => onStep?.({ step: index + 1, totalSteps: timesteps.length, timestep: t }));
        if (onProgress && (await CallbackFailure.wrap(() => wantsLatents(index + 1, timesteps.length)))) {
          const readStarted = performance.now();
          const current = (await this.reader.read(latents)) as Float32Array;
          readBackMs += performance.now() - readStarted;
          await CallbackFailure.wrap(() => onProgress({ step: index + 1, totalSteps: timesteps.length, timestep: t, latents: current, shape: latentShape }));
        }
      }
      const readStarted = performance.now();
      const final = Float32Array.from((await this.reader.read(latents)) as Float32Array);
      readBackMs += performance.now() - readStarted;
      return { latents: final, unetMs, overlappedMs, nodeStepMsPerStep, stepGraphMs, readBackMs };
    } finally {
      // Also on abort or error: GPU outputs are freed by dispose() alone in onnxruntime-node 1.30.
      onDevice(prediction)?.dispose();
      onDevice(sample)?.dispose();
      onDevice(latents)?.dispose();
      if (hidden !== loop.textTensor) onDevice(hidden)?.dispose();
    }
  }

  /**
   * VAE-decodes image `index` (one at a time keeps memory flat for big batches) and post-processes as diffusers:
   * `(x / 2 + 0.5).clamp(0, 1)`, then ×255 rounded half to even. Returns 8-bit RGB and the float image (HWC).
   */
  async decode(latents: Float32Array, shape: LatentShape, index: number): Promise<{ rgb: Uint8Array; float: Float32Array }> {
    const [, channels, h, w] = shape;
    const { vaeDecoder, vaeScalingFactor } = this.model;
    const perImage = channels * h * w;
    const input = new Float32Array(perImage);
    const source = latents.subarray(index * perImage, (index + 1) * perImage);
    for (let i = 0; i < perImage; i++) input[i] = source[i]! / vaeScalingFactor;
    const feed = TensorFeeder.forInput(vaeDecoder.session, 'latent_sample', [1, channels, h, w]);
    const outputs = await vaeDecoder.session.run({ latent_sample: feed.setFloats(input) });
    const sample = firstOutput(vaeDecoder, outputs);
    const [, , height, width] = sample.dims as [number, number, number, number];
    const planar = readFloats(sample, new Float32Array(3 * height * width));
    const plane = height * width;
    const rgb = new Uint8Array(plane * 3);
    const float = new Float32Array(plane * 3);
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const value = Math.fround(Math.fround(planar[c * plane + p]! / 2) + 0.5);
        const clamped = value < 0 ? 0 : value > 1 ? 1 : value;
        float[p * 3 + c] = clamped;
        rgb[p * 3 + c] = roundHalfEven(Math.fround(clamped * 255));
      }
    }
    return { rgb, float };
  }
}
