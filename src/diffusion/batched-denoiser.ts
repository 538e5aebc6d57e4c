/**
 * Continuous batching across jobs: one running UNet batch that several generations share, each at its own step.
 *
 * The exported UNet takes one timestep per batch row (`timestep [b]`), so rows can be at different steps. Each
 * generation joins as a *row group* (its DenoiseStart: scheduler, generator, timesteps, latents; its text
 * conditioning; its guidance scale). One batch step:
 *
 *   1. admit waiting groups (arrival order, at this step boundary) while their rows fit and they are compatible;
 *   2. for every live group: `scaleModelInput` of its latents at its own timestep, written into its rows of `sample`
 *      (twice with guidance: unconditional rows, then conditional), its timestep into its rows of `timestep`;
 *   3. one UNet run over all rows (each group's step noise is drawn meanwhile, as the single-job loop does);
 *   4. split the output by group: its own guidance (cfg) and its own `scheduler.step`, then its callbacks;
 *   5. retire groups that ran their last timestep (their final latents resolve) or were cancelled.
 *
 * Text encoding and VAE decoding stay per job, outside (pipeline.ts). Everything per job is the job's own: scheduler
 * state, generator(s), conditioning, cfg, step count and scheduler kind may all differ between groups; only what
 * the UNet's tensors must share has to match (see `batchCompatibilityKey`). Each row's result equals the job run
 * alone up to the UNet's float rounding at another batch size (test/diffusion/batched-denoiser.test.ts).
 *
 * This runs the JS stepper's arithmetic (guidance and `scheduler.step` on CPU arrays); the device loop
 * (DeviceLoopStepper) stays single-job.
 */
import type * as ort from 'onnxruntime-node';
import { CancelledError } from './errors.js';
import type { ModelPart } from './model.js';
import type { GpuTensorReader } from './providers.js';
import type { LatentShape } from './request.js';
import type { DenoiseStart } from './steppers.js';
import { firstOutput, floatsFromData, readFloats, TensorFeeder } from './tensors.js';
import type { TextConditioning } from './text-conditioning.js';
import type { LoopTimings } from './timings.js';
import { applyGuidance } from './unet-runner.js';

/** One generation's part of the running batch. */
export interface RowGroupInput {
  start: DenoiseStart;
  /** Its conditioning: [negative × n, prompt × n] with guidance, prompt × n without: the group's UNet rows. */
  text: TextConditioning;
  /** Guidance scale; > 1 runs both halves (two rows per image), as the single-job loop does. */
  cfg: number;
  /** (n, 4, h, w). */
  shape: LatentShape;
  /**
   * Further UNet inputs that differ per row (e.g. an LCM UNet's `timestep_cond`): by input name, the group's rows ×
   * width values, in the group's row order. Groups are batched only with groups that feed the same names.
   */
  rowInputs?: Readonly<Record<string, Float32Array>>;
  /** What else changes the UNet's weights for this group (the LoRA set, when there is one); part of the key. */
  adapters?: readonly string[];
  signal?: AbortSignal;
  /**
   * After each of the group's steps (1-based), with its latents (valid during the call only). A throw fails this
   * group alone, with that error.
   */
  afterStep?: (step: number, totalSteps: number, timestep: number, latents: Float32Array) => void | Promise<void>;
  timings?: LoopTimings;
}

/**
 * Groups with equal keys can share a UNet batch: the same latent size, the same text sequence length and width
 * (77 under `plain`, 77·k under `a1111`), the same extra row inputs and the same adapters (LoRA set). The model is
 * the denoiser's own (one per pipeline).
 */
export function batchCompatibilityKey(input: Pick<RowGroupInput, 'shape' | 'text' | 'rowInputs' | 'adapters'>): string {
  const [, channels, height, width] = input.shape;
  const [, sequence, textWidth] = input.text.dims;
  const extra = Object.keys(input.rowInputs ?? {}).sort().join(',');
  return `${channels}x${height}x${width}|text ${sequence}x${textWidth}|rows ${extra}|adapters ${[...(input.adapters ?? [])].sort().join(',')}`;
}

/** The UNet rows a group takes: two per image with guidance (cfg > 1), one without. */
export function rowsOf(images: number, cfg: number): number {
  return cfg > 1 ? 2 * images : images;
}

class RowGroup {
  readonly key: string;
  readonly rows: number;
  readonly guidance: boolean;
  readonly latentCount: number;
  /** The guided prediction (guidance only), reused every step. */
  private readonly guided: Float32Array | null;
  latents: Float32Array;
  index = 0;
  readonly done: Promise<Float32Array>;
  resolve!: (latents: Float32Array) => void;
  reject!: (error: unknown) => void;

  constructor(readonly input: RowGroupInput) {
    this.key = batchCompatibilityKey(input);
    this.guidance = input.cfg > 1;
    this.rows = input.text.dims[0]!;
    this.latentCount = input.shape.reduce((product, dim) => product * dim, 1);
    if (this.rows !== rowsOf(input.shape[0], input.cfg)) {
      throw new Error(`the text conditioning has ${this.rows} rows for ${input.shape[0]} images at cfg ${input.cfg}`);
    }
    for (const [name, values] of Object.entries(input.rowInputs ?? {})) {
      if (values.length % this.rows !== 0) throw new Error(`row input ${name}: ${values.length} values do not split into ${this.rows} rows`);
    }
    this.guided = this.guidance ? new Float32Array(this.latentCount) : null;
    this.latents = input.start.latents;
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  get timestep(): number {
    return this.input.start.timesteps[this.index]!;
  }

  get finished(): boolean {
    return this.index >= this.input.start.timesteps.length;
  }

  /** Guidance (when on) on this group's slice of the UNet output: uncond rows first, as the single-job loop. */
  prediction(output: Float32Array): Float32Array {
    if (!this.guided) return output;
    applyGuidance(output, this.guided, this.latentCount, this.input.cfg);
    return this.guided;
  }
}

/** The UNet feeds for one batch composition, rebuilt only when groups join or leave. */
interface BatchFeeds {
  rows: number;
  /** float32 staging for `sample` (narrowed by its feeder for fp16 UNets). */
  sample: Float32Array;
  timesteps: Float32Array;
  feeders: { sample: TensorFeeder; timestep: TensorFeeder };
  /** Inputs that stay the same while the composition does: text and extra row inputs. */
  fixed: Record<string, ort.Tensor>;
}

/**
 * A running UNet batch shared by generations (row groups) over one model. `denoise` may be called at any time, also
 * while a batch runs; it resolves to the group's final latents (a copy it owns) or rejects with CancelledError (its
 * signal), its callback's error, or the UNet's error (which fails every group in that step).
 */
export class BatchedDenoiser {
  private readonly waiting: RowGroup[] = [];
  private live: RowGroup[] = [];
  private running = false;
  private feeds: BatchFeeds | null = null;
  /** The UNet output widened to float32, reused while the row count stays. */
  private widened = new Float32Array(0);
  /** UNet rows of every step run so far (for the bench and tests: how full the batches were). */
  rowSteps = 0;
  unetRuns = 0;

  constructor(
    private readonly unet: ModelPart,
    /** Most UNet rows in one run (`worker.maxBatch`); a group larger than this runs alone. */
    readonly maxRows: number,
    private readonly reader: GpuTensorReader,
  ) {
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new RangeError(`maxRows must be a positive whole number (got ${maxRows})`);
  }

  /** UNet rows live now, and waiting. */
  get load(): { liveRows: number; waitingRows: number; liveGroups: number } {
    return {
      liveRows: this.live.reduce((sum, group) => sum + group.rows, 0),
      waitingRows: this.waiting.reduce((sum, group) => sum + group.rows, 0),
      liveGroups: this.live.length,
    };
  }

  denoise(input: RowGroupInput): Promise<Float32Array> {
    const group = new RowGroup(input);
    const { signal } = input;
    if (signal?.aborted) return Promise.reject(new CancelledError());
    // A waiting group may wait for a whole batch to drain: a cancel takes it out at once, not at its admission.
    const onAbort = () => {
      const at = this.waiting.indexOf(group);
      if (at >= 0) {
        this.waiting.splice(at, 1);
        group.reject(new CancelledError());
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    void group.done.then(
      () => signal?.removeEventListener('abort', onAbort),
      () => signal?.removeEventListener('abort', onAbort),
    );
    this.waiting.push(group);
    if (!this.running) {
      this.running = true;
      void this.run().finally(() => (this.running = false));
    }
    return group.done;
  }

  /**
   * Takes waiting groups in arrival order while they fit: the first one decides nothing about the others' order,
   * and a group that does not fit (too many rows, or incompatible with the live batch) makes the ones behind it wait
   * too, so admission order is arrival order (the queue's fair order). An empty batch admits any one group.
   */
  private admit(): void {
    let rows = this.live.reduce((sum, group) => sum + group.rows, 0);
    while (this.waiting.length > 0) {
      const head = this.waiting[0]!;
      const first = this.live[0];
      if (first && (head.key !== first.key || rows + head.rows > this.maxRows)) break;
      this.waiting.shift();
      this.live.push(head);
      rows += head.rows;
      this.feeds = null;
    }
  }

  private retire(group: RowGroup): void {
    this.live = this.live.filter((other) => other !== group);
    this.feeds = null;
  }

  private async run(): Promise<void> {
    // Let jobs that arrive together (same tick) start together.
    await Promise.resolve();
    for (;;) {
      for (const group of this.live) {
        if (group.input.signal?.aborted) {
          this.retire(group);
          group.reject(new CancelledError());
        }
      }
      this.admit();
      if (this.live.length === 0) return;
      try {
        await this.step();
      } catch (error) {
        for (const group of this.live) group.reject(error);
        this.live = [];
        this.feeds = null;
      }
    }
  }

  private feedsFor(groups: readonly RowGroup[]): BatchFeeds {
    if (this.feeds) return this.feeds;
    const { session } = this.unet;
    const first = groups[0]!;
    const [, channels, height, width] = first.input.shape;
    const rows = groups.reduce((sum, group) => sum + group.rows, 0);
    const [, sequence, textWidth] = first.input.text.dims as [number, number, number];
    const text = TensorFeeder.forInput(session, 'encoder_hidden_states', [rows, sequence, textWidth]);
    const embeddings = new Float32Array(text.size);
    let offset = 0;
    for (const group of groups) {
      embeddings.set(group.input.text.embeddings, offset);
      offset += group.input.text.embeddings.length;
    }
    const fixed: Record<string, ort.Tensor> = { encoder_hidden_states: text.setFloats(embeddings) };
    for (const name of Object.keys(first.input.rowInputs ?? {})) {
      const perRow = first.input.rowInputs![name]!.length / first.rows;
      const values = new Float32Array(rows * perRow);
      let at = 0;
      for (const group of groups) {
        values.set(group.input.rowInputs![name]!, at);
        at += group.rows * perRow;
      }
      fixed[name] = TensorFeeder.forInput(session, name, [rows, perRow]).setFloats(values);
    }
    const sampleDims = [rows, channels, height, width];
    const sample = TensorFeeder.forInput(session, 'sample', sampleDims);
    this.feeds = {
      rows,
      sample: new Float32Array(sample.size),
      timesteps: new Float32Array(rows),
      feeders: { sample, timestep: TensorFeeder.forInput(session, 'timestep', [rows]) },
      fixed,
    };
    return this.feeds;
  }

  /** One UNet run for every live group, each at its own timestep, then each group's guidance, step and callback. */
  private async step(): Promise<void> {
    const groups = [...this.live];
    const feeds = this.feedsFor(groups);
    const perImage = groups[0]!.latentCount / groups[0]!.input.shape[0];
    let row = 0;
    for (const group of groups) {
      group.input.timings?.beginStep();
      const t = group.timestep;
      const scaled = group.input.start.scheduler.scaleModelInput(group.latents, t);
      const images = group.input.shape[0];
      // Both guidance halves see the same latents: unconditional rows first, then conditional (text's row order).
      for (let half = 0; half < group.rows / images; half++) feeds.sample.set(scaled, (row + half * images) * perImage);
      feeds.timesteps.fill(t, row, row + group.rows);
      row += group.rows;
    }
    const inputs = {
      ...feeds.fixed,
      sample: feeds.feeders.sample.setFloats(feeds.sample),
      // Integer timestep inputs take t truncated, as in the single-job loop (TensorFeeder).
      timestep: feeds.feeders.timestep.setFloats(feeds.timesteps),
    };
    const runStarted = performance.now();
    const running = this.unet.session.run(inputs);
    // Each group's step noise, drawn while the UNet runs, from its own generator, as UnetRunner.run does.
    const drawMs = groups.map((group) => {
      const { scheduler, generator } = group.input.start;
      if (!scheduler.prepareStep) return 0;
      const drawStarted = performance.now();
      scheduler.prepareStep(generator, group.latentCount);
      return performance.now() - drawStarted;
    });
    const output = firstOutput(this.unet.session, await running);
    const runMs = performance.now() - runStarted;
    this.unetRuns++;
    this.rowSteps += feeds.rows;
    const noise = await this.widen(output, feeds.rows * perImage);

    row = 0;
    for (const [at, group] of groups.entries()) {
      const slice = noise.subarray(row * perImage, (row + group.rows) * perImage);
      row += group.rows;
      const t = group.timestep;
      const { scheduler, generator } = group.input.start;
      group.input.timings?.unetRan(runMs, drawMs[at]!);
      group.latents = scheduler.step(group.prediction(slice), t, group.latents, generator);
      group.index++;
      group.input.timings?.endStep();
      try {
        await group.input.afterStep?.(group.index, group.input.start.timesteps.length, t, group.latents);
      } catch (error) {
        this.retire(group);
        group.reject(error);
        continue;
      }
      if (group.finished) {
        this.retire(group);
        group.resolve(Float32Array.from(group.latents));
      }
    }
  }

  /** The UNet output as float32 on the CPU (read back from a GPU, or widened from float16). */
  private async widen(output: ort.Tensor, count: number): Promise<Float32Array> {
    if (output.location !== 'gpu-buffer' && output.type === 'float32') return output.data as Float32Array;
    if (this.widened.length !== count) this.widened = new Float32Array(count);
    if (output.location === 'gpu-buffer') {
      const data = await this.reader.read(output);
      output.dispose();
      return floatsFromData(data, output.type, this.widened);
    }
    return readFloats(output, this.widened);
  }
}
