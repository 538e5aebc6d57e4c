/**
 * The UNet's side of a denoising step: its feeds (allocated once per generation, in the dtypes its metadata
 * declares), running it while the step's noise is drawn, and classifier-free guidance on its output.
 */
import * as ort from 'onnxruntime-node';
import { InvalidRequestError } from './errors.js';
import { guidanceEmbeddingDim, guidanceEmbeddingRows, TIMESTEP_COND_INPUT } from './guidance-embedding.js';
import { halfToFloatValues, toFloat16Into } from './fp16.js';
import type { ModelPart } from './model.js';
import type { GpuTensorReader } from './providers.js';
import type { LatentShape } from './request.js';
import type { NoiseGenerator } from './rng/types.js';
import type { Scheduler } from './schedulers/types.js';
import { firstOutput, floatsFromData, readFloats, TensorFeeder } from './tensors.js';
import type { TextConditioning } from './text-conditioning.js';

/** The UNet batch: both guidance halves (unconditional first) in one run, or the prompt alone without guidance. */
export function unetSampleDims(latentShape: LatentShape, guidance: boolean): number[] {
  const [batch, channels, height, width] = latentShape;
  return [guidance ? 2 * batch : batch, channels, height, width];
}

/** One generation's UNet feeds and runs. */
export class UnetRunner {
  /** The buffer behind `sample`: float32, or raw float16 halves for fp16 UNets. The UNet reads it directly. */
  private readonly input: Float32Array | Uint16Array;
  /** The UNet's `sample` feed as made on the CPU (every step in the JS loop, the first step in the device loop). */
  readonly sample: ort.Tensor;
  /** The UNet's `encoder_hidden_states` feed on the CPU. */
  readonly text: ort.Tensor;
  private readonly timestep: TensorFeeder;
  /** LCM UNets' `timestep_cond` feed: the guidance embedding for every batch row (guidance-embedding.ts), else null. */
  readonly timestepCond: ort.Tensor | null = null;

  constructor(
    private readonly unet: ModelPart,
    /** Values in the latent tensor (batch × 4 × h × w): one guidance half of the UNet batch. */
    readonly latentCount: number,
    readonly guidance: boolean,
    sampleDims: number[],
    conditioning: TextConditioning,
    /** The request's CFG scale: what an LCM UNet (one with `timestep_cond`) takes as its guidance embedding. */
    guidanceScale = 1,
  ) {
    const dtype = unet.inputs.get('sample')!.dtype;
    if (dtype !== 'float32' && dtype !== 'float16') throw new InvalidRequestError(`unet sample input has type ${dtype}; float32 or float16 expected.`);
    const size = sampleDims.reduce((product, dim) => product * dim, 1);
    this.input = dtype === 'float32' ? new Float32Array(size) : new Uint16Array(size);
    this.sample = new ort.Tensor(dtype, this.input, sampleDims);
    this.timestep = TensorFeeder.forInput(unet.session, 'timestep', [sampleDims[0]!]);
    this.text = TensorFeeder.forInput(unet.session, 'encoder_hidden_states', conditioning.dims).setFloats(conditioning.embeddings);
    const embeddingDim = guidanceEmbeddingDim(unet);
    if (embeddingDim !== null) {
      const rows = sampleDims[0]!;
      this.timestepCond = TensorFeeder.forInput(unet.session, TIMESTEP_COND_INPUT, [rows, embeddingDim]).setFloats(guidanceEmbeddingRows(guidanceScale, embeddingDim, rows));
    }
  }

  /**
   * Writes the (scaled) latents into the `sample` feed: narrowed to float16 for fp16 UNets, then copied into the
   * second half of the batch for guidance rather than narrowed twice. Returns the feed.
   */
  writeSample(scaled: Float32Array): ort.Tensor {
    if (this.input instanceof Float32Array) this.input.set(scaled, 0);
    else toFloat16Into(scaled, this.input);
    if (this.guidance) this.input.copyWithin(this.latentCount, 0, this.latentCount);
    return this.sample;
  }

  /**
   * Runs the UNet at timestep `t`; while it runs on ONNX Runtime's threads, draws this step's noise (ancestral
   * schedulers) from the same generator, in the same order as the step would, so it costs nothing when the UNet is
   * the slower one. `runMs` is the wall time of the run (the draw included); `drawMs` the draw alone.
   */
  async run(
    sample: ort.Tensor,
    encoderHiddenStates: ort.Tensor,
    t: number,
    scheduler: Scheduler,
    generator: NoiseGenerator,
  ): Promise<{ output: ort.Tensor; runMs: number; drawMs: number }> {
    // Integer timestep inputs take t truncated, as numpy's astype does in diffusers' ONNX pipeline.
    const feeds: Record<string, ort.Tensor> = { sample, timestep: this.timestep.fill(t), encoder_hidden_states: encoderHiddenStates };
    if (this.timestepCond) feeds[TIMESTEP_COND_INPUT] = this.timestepCond;
    const runStarted = performance.now();
    const running = this.unet.session.run(feeds);
    let drawMs = 0;
    if (scheduler.prepareStep) {
      const drawStarted = performance.now();
      scheduler.prepareStep(generator, this.latentCount);
      drawMs = performance.now() - drawStarted;
    }
    const outputs = await running;
    return { output: firstOutput(this.unet.session, outputs), runMs: performance.now() - runStarted, drawMs };
  }
}

/** noise = uncond + cfg · (cond − uncond); the first half of the UNet batch is the unconditional one. */
export function applyGuidance(noise: Float32Array, into: Float32Array, count: number, cfg: number): void {
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

/** The UNet output as the (guided) noise prediction on the CPU, with buffers reused every step. */
export class CpuGuidance {
  /** Where float16 or GPU outputs are widened. */
  private readonly widened: Float32Array;
  private readonly guided: Float32Array | null;

  constructor(
    private readonly runner: UnetRunner,
    private readonly cfg: number,
    private readonly reader: GpuTensorReader,
  ) {
    this.widened = new Float32Array(runner.sample.size);
    this.guided = runner.guidance ? new Float32Array(runner.latentCount) : null;
  }

  /** The guided prediction; valid until the next call. Reads a GPU output back (and disposes it). */
  async predictionFrom(output: ort.Tensor): Promise<Float32Array> {
    const { guided, cfg } = this;
    const count = this.runner.latentCount;
    // A float32 output is used where ORT put it (a fresh array each run); float16 is widened into a reused buffer.
    let noise: Float32Array | null = null;
    if (output.location === 'gpu-buffer') {
      noise = floatsFromData(await this.reader.read(output), output.type, this.widened);
      output.dispose();
    } else if (output.type === 'float32') {
      noise = output.data as Float32Array;
    } else if (!guided) {
      noise = readFloats(output, this.widened);
    }
    if (!guided) return noise!;
    // An fp16 output goes straight from halves to guided floats: one pass instead of widening the batch first.
    if (noise) applyGuidance(noise, guided, count, cfg);
    else applyGuidanceToHalves(output.data as Uint16Array, guided, count, cfg);
    return guided;
  }
}
