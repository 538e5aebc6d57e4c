/**
 * Where each denoising step's guidance and scheduler update run, behind one `Stepper` contract, so that the pipeline
 * has one loop (pipeline.ts' `denoisingLoop`) whichever runs:
 * - `JsStepper`: guidance and `scheduler.step` in JS on CPU arrays. Every scheduler; on WebGPU (a UNet opened with
 *   its output on the GPU) the output is read back each step.
 * - `DeviceLoopStepper`: guidance and the step as a tiny ONNX graph on the UNet's execution provider
 *   (device-step.ts), fed with coefficients from `Scheduler.linearStep`; its outputs (next latents, next UNet input)
 *   are fed straight back, so on WebGPU latents stay on the GPU between steps and are read back only for previews and
 *   the final decode. Only for schedulers with `linearStep` (euler, euler_a, ddim without clip_sample).
 * - `withJsFallback`: the `auto` mode's safety net, which starts a generation over on the JS stepper when the device
 *   loop fails for a reason of its own.
 */
import * as ort from 'onnxruntime-node';
import type { DeviceStepper } from './device-step.js';
import { CancelledError } from './errors.js';
import type { GpuTensorReader, GpuTensorUploader } from './providers.js';
import type { LatentShape } from './request.js';
import type { NoiseGenerator } from './rng/types.js';
import { supportsLinearStep, type Scheduler } from './schedulers/types.js';
import type { LoopTimings } from './timings.js';
import type { CpuGuidance, UnetRunner } from './unet-runner.js';

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

/**
 * Where a denoising loop starts: a scheduler whose timesteps are set, the generator its noise comes from, the
 * timesteps to run and the latents at the first of them. Text-to-image runs all of `scheduler.timesteps` from pure
 * noise × initNoiseSigma; image-to-image runs a tail of them from noised image latents (img2img.ts).
 */
export interface DenoiseStart {
  scheduler: Scheduler;
  generator: NoiseGenerator;
  timesteps: Float64Array;
  latents: Float32Array;
}

/** One strategy for the part of a step after the UNet: guidance and the scheduler's update. */
export interface Stepper {
  readonly loop: 'js' | 'device';
  /** The UNet's `sample` and `encoder_hidden_states` for step `index` (0-based): scaleModelInput of the latents. */
  unetInputs(index: number, t: number): { sample: ort.Tensor; encoderHiddenStates: ort.Tensor };
  /** Guidance and the scheduler's step at timestep `t` on the UNet's output, which the stepper then owns. */
  step(unetOutput: ort.Tensor, t: number): Promise<void>;
  /** The current latents on the CPU, for a preview; valid until the next step. */
  currentLatents(): Promise<Float32Array>;
  /** The final latents, a copy the caller owns. */
  finalLatents(): Promise<Float32Array>;
  /** Frees what the stepper holds on the device; also after an error or an abort. */
  dispose(): void;
}

/** Guidance and `scheduler.step` in JS on CPU arrays. */
export class JsStepper implements Stepper {
  readonly loop = 'js';
  private latents: Float32Array;

  constructor(
    private readonly start: DenoiseStart,
    private readonly unet: UnetRunner,
    private readonly guidance: CpuGuidance,
  ) {
    this.latents = start.latents;
  }

  unetInputs(_index: number, t: number): { sample: ort.Tensor; encoderHiddenStates: ort.Tensor } {
    return { sample: this.unet.writeSample(this.start.scheduler.scaleModelInput(this.latents, t)), encoderHiddenStates: this.unet.text };
  }

  async step(unetOutput: ort.Tensor, t: number): Promise<void> {
    const prediction = await this.guidance.predictionFrom(unetOutput);
    this.latents = this.start.scheduler.step(prediction, t, this.latents, this.start.generator);
  }

  async currentLatents(): Promise<Float32Array> {
    return this.latents;
  }

  async finalLatents(): Promise<Float32Array> {
    return Float32Array.from(this.latents);
  }

  dispose(): void {}
}

/** What the device loop needs from the pipeline, which keeps the step graphs and GPU helpers across generations. */
export interface DeviceLoopContext {
  reader: GpuTensorReader;
  uploader: GpuTensorUploader;
  /** The step graph for this UNet, with or without a noise input (opened once, then cached by the pipeline). */
  stepGraph(withNoise: boolean): Promise<DeviceStepper>;
  cfg: number;
  shape: LatentShape;
  timings: LoopTimings;
}

/** Tensors that may live on the GPU: each is disposed once the next step has consumed it. */
function onDevice(tensor: ort.Tensor | null): ort.Tensor | null {
  return tensor?.location === 'gpu-buffer' ? tensor : null;
}

/**
 * UNet → step graph (guidance + `linearStep`'s update, on the UNet's provider) → UNet …, the step graph's outputs fed
 * straight back. On WebGPU both stay on the GPU; latents come back to the CPU only for previews and once at the end.
 * Only the first UNet input is made on the CPU (`scaleModelInput` of the initial latents). Euler a's per-step noise
 * is drawn on the CPU from the same generator as in the JS loop (while the UNet runs) and goes in as an input.
 */
export class DeviceLoopStepper implements Stepper {
  readonly loop = 'device';
  private sample: ort.Tensor;
  private latents: ort.Tensor;
  private prediction: ort.Tensor | null = null;

  private constructor(
    private readonly start: DenoiseStart & { scheduler: Required<Pick<Scheduler, 'linearStep'>> },
    private readonly unet: UnetRunner,
    private readonly context: DeviceLoopContext,
    private readonly hidden: ort.Tensor,
  ) {
    this.sample = unet.sample;
    this.latents = new ort.Tensor('float32', start.latents, [...context.shape]);
  }

  /** Throws (a device-loop failure, see `withJsFallback`) when the scheduler cannot step linearly. */
  static async open(start: DenoiseStart, unet: UnetRunner, context: DeviceLoopContext): Promise<DeviceLoopStepper> {
    const { scheduler } = start;
    if (!supportsLinearStep(scheduler)) throw new Error(`${scheduler.name} has no linear step`);
    const hidden = await context.uploader.upload(unet.text);
    return new DeviceLoopStepper({ ...start, scheduler }, unet, context, hidden);
  }

  unetInputs(index: number, t: number): { sample: ort.Tensor; encoderHiddenStates: ort.Tensor } {
    if (index === 0) this.unet.writeSample(this.start.scheduler.scaleModelInput(this.start.latents, t));
    return { sample: this.sample, encoderHiddenStates: this.hidden };
  }

  async step(unetOutput: ort.Tensor, t: number): Promise<void> {
    this.prediction = unetOutput;
    const { context } = this;
    const linear = this.start.scheduler.linearStep(t, this.unet.latentCount, this.start.generator);
    const noise = linear.noiseValues ? new ort.Tensor('float32', linear.noiseValues, [...context.shape]) : undefined;
    const graph = await context.stepGraph(noise !== undefined);
    const coefficients = { latents: linear.latents, prediction: linear.prediction, guidance: context.cfg, noise: linear.noise, nextInputScale: linear.nextInputScale };
    const next = await context.timings.stepGraph(() => graph.step(unetOutput, this.latents, coefficients, noise));
    onDevice(this.prediction)?.dispose();
    this.prediction = null;
    onDevice(this.sample)?.dispose();
    onDevice(this.latents)?.dispose();
    this.sample = next.sample;
    this.latents = next.latents;
  }

  async currentLatents(): Promise<Float32Array> {
    return (await this.context.timings.readBack(() => this.context.reader.read(this.latents))) as Float32Array;
  }

  async finalLatents(): Promise<Float32Array> {
    return Float32Array.from(await this.currentLatents());
  }

  dispose(): void {
    // Also on abort or error: GPU outputs are freed by dispose() alone in onnxruntime-node 1.30.
    onDevice(this.prediction)?.dispose();
    onDevice(this.sample)?.dispose();
    onDevice(this.latents)?.dispose();
    if (this.hidden !== this.unet.text) onDevice(this.hidden)?.dispose();
  }
}

/** An error thrown by the caller's callback inside the loop, carried out unchanged (see `unwrap`). */
export class CallbackFailure {
  constructor(readonly error: unknown) {}

  static async wrap<T>(callback: () => T | Promise<T>): Promise<T> {
    try {
      return await callback();
    } catch (error) {
      throw new CallbackFailure(error);
    }
  }

  /** Runs `work`, rethrowing a callback's error as the caller threw it. */
  static async unwrap<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (failure) {
      throw failure instanceof CallbackFailure ? failure.error : failure;
    }
  }
}

/**
 * Runs `onDevice`; under `auto`, should it fail for a reason of its own (not the caller's callback, not a cancel),
 * tells `onFailure` why (first line) and returns `restartOnJs()`: the whole denoising again on the JS stepper, from a
 * fresh start (the scheduler and the generator had advanced): same request, same stream, same image.
 */
export async function withJsFallback<T>(
  mode: DeviceLoopMode,
  onDevice: () => Promise<T>,
  restartOnJs: () => Promise<T>,
  onFailure: (reason: string) => void,
): Promise<T> {
  try {
    return await onDevice();
  } catch (failure) {
    if (failure instanceof CallbackFailure || failure instanceof CancelledError || mode !== 'auto') throw failure;
    onFailure(failure instanceof Error ? (failure.message.split('\n')[0] ?? failure.message) : String(failure));
    return restartOnJs();
  }
}
