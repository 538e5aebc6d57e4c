/**
 * Where a generation's time goes, recorded by one object instead of counters threaded through the loop. The shape
 * of `GenerationTimings` is what bench/engine.bench.ts and bench/gpu.bench.ts read: keep it stable.
 */

export interface GenerationTimings {
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
}

/** The phases of a generation timed as a whole. */
export type TimedPhase = 'textEncoderMs' | 'denoiseMs' | 'decodeMs' | 'safetyMs';

/**
 * The denoising loop's own counters, for one run of the loop. Each step is bracketed by `beginStep`/`endStep`; what
 * runs elsewhere inside it (the UNet's session.run, the step graph's) is reported as it happens and subtracted, so
 * `nodeStepMsPerStep` is Node's own share. Callbacks run after `endStep` and count nowhere.
 */
export class LoopTimings {
  unetMs = 0;
  overlappedMs = 0;
  stepGraphMs = 0;
  readBackMs = 0;
  readonly nodeStepMsPerStep: number[] = [];
  private stepStarted = 0;
  private elsewhereMs = 0;

  beginStep(): void {
    this.stepStarted = performance.now();
    this.elsewhereMs = 0;
  }

  /** The UNet's run took `runMs` (wall time, the overlapped draw included); `drawMs` of Node work ran meanwhile. */
  unetRan(runMs: number, drawMs: number): void {
    this.unetMs += runMs;
    this.overlappedMs += drawMs;
    this.elsewhereMs += runMs;
  }

  /** Times the step graph's run (device loop). */
  async stepGraph<T>(run: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await run();
    } finally {
      const ms = performance.now() - started;
      this.stepGraphMs += ms;
      this.elsewhereMs += ms;
    }
  }

  endStep(): void {
    this.nodeStepMsPerStep.push(performance.now() - this.stepStarted - this.elsewhereMs);
  }

  /** Times reading latents back from the device (device loop: previews and the final latents). */
  async readBack<T>(read: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await read();
    } finally {
      this.readBackMs += performance.now() - started;
    }
  }
}

/** One generation's timings: whole phases, plus the counters of the denoising loop that produced the image. */
export class TimingRecorder {
  private readonly started = performance.now();
  private readonly phases: Record<TimedPhase, number> = { textEncoderMs: 0, denoiseMs: 0, decodeMs: 0, safetyMs: 0 };
  private loop = new LoopTimings();

  /** Runs one phase and adds its wall time to that phase (an auto-fallback restart adds to denoiseMs). */
  async time<T>(phase: TimedPhase, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.phases[phase] += performance.now() - started;
    }
  }

  /** Fresh loop counters: a loop that restarts (auto fallback) reports only the run that made the image. */
  startLoop(): LoopTimings {
    this.loop = new LoopTimings();
    return this.loop;
  }

  /** The timings as `GenerationResult.timings`; totalMs runs until this call. */
  result(): GenerationTimings {
    const { unetMs, overlappedMs, stepGraphMs, readBackMs, nodeStepMsPerStep } = this.loop;
    return {
      textEncoderMs: this.phases.textEncoderMs,
      denoiseMs: this.phases.denoiseMs,
      unetMs,
      nodeStepMs: nodeStepMsPerStep.reduce((sum, ms) => sum + ms, 0),
      overlappedMs,
      nodeStepMsPerStep: [...nodeStepMsPerStep],
      stepGraphMs,
      readBackMs,
      decodeMs: this.phases.decodeMs,
      safetyMs: this.phases.safetyMs,
      totalMs: performance.now() - this.started,
    };
  }
}
