// A small real ImageGenerator for the queue tests: it works step by step on timers, reports progress, honours the
// AbortSignal between steps, and returns real PNGs made by sharp. The real engine is wired in by the lead.
import sharp from 'sharp';
import { CancelledError } from '../../../src/errors.js';
import type { GeneratedImages, GenerateOptions, GenerationRequest, ImageGenerator } from '../../../src/queue/types.js';

export class StepGenerator implements ImageGenerator {
  /** Prompts in the order generate() was called. */
  readonly started: string[] = [];
  readonly finished: string[] = [];
  /** Prompts listed here never finish on their own (they wait for the abort signal): a run "stuck" on the GPU. */
  readonly hangOn = new Set<string>();
  /** Prompts listed here throw a plain Error halfway, as a crashed engine would. */
  readonly failOn = new Set<string>();
  /** Prompts listed here wait for their promise before their first step (a job that is busy until the test says). */
  readonly gates = new Map<string, Promise<void>>();

  private readonly halted = new AbortController();

  constructor(private readonly stepMs = 5) {}

  /** Ends every pending run with an error: what remains of an "abandoned" process at the end of a test. */
  halt(): void {
    this.halted.abort(new Error('test generator halted'));
  }

  async generate(request: GenerationRequest, options: GenerateOptions): Promise<GeneratedImages> {
    this.started.push(request.prompt);
    if (this.hangOn.has(request.prompt)) {
      // No timer: a stuck run holds no event-loop handle, so an abandoned one does not keep the test process alive.
      await new Promise<never>((_, reject) => {
        const signal = AbortSignal.any([options.signal, this.halted.signal]);
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    }
    await this.gates.get(request.prompt);
    for (let step = 1; step <= request.steps; step++) {
      await wait(this.stepMs, AbortSignal.any([options.signal, this.halted.signal]));
      if (this.failOn.has(request.prompt) && step * 2 >= request.steps) throw new Error('CUDA error: an illegal memory access was encountered');
      options.onProgress?.({ step, totalSteps: request.steps });
    }
    const images = [];
    // img2img: this generator paints nothing over a starting image; it returns its bytes, so a test sees what arrived.
    const initImage = (request as { initImage?: { data: Uint8Array } }).initImage;
    for (let i = 0; i < request.count; i++) {
      const seed = request.seed + BigInt(i);
      const shade = Number(seed % 256n);
      const png = initImage ? Buffer.from(initImage.data) : await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: shade, g: 64, b: 128 } } }).png().toBuffer();
      images.push({ png, seed, nsfw: false });
    }
    this.finished.push(request.prompt);
    return { images, model: 'test-generator' };
  }
}

function wait(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason ?? new CancelledError());
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason ?? new CancelledError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
