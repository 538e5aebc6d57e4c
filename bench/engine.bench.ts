/**
 * `npm run bench`: the engine's speed on this machine, with the tiny test model on the CPU.
 *
 * 1. Node-side time per denoising step (everything but the UNet's session.run: input scaling and batching for
 *    guidance, dtype handling, guidance, the scheduler step) at SD 1.5's 512² latent size, 64×64×4 latents with
 *    the CFG batch of 2. Target: ≤ 0.2 ms per step on a 2-core machine.
 * 2. The tiny model's seconds per 30-step image (at 128² and 512²).
 *
 * The tiny UNet's own run time is meaningless for real models, so (1) subtracts it: the pipeline measures the time
 * spent inside session.run and reports the rest of the loop separately.
 */
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { loadPipeline } from '../src/diffusion/load.js';
import type { SchedulerName } from '../src/diffusion/schedulers/types.js';
import { SCHEDULER_NAMES } from '../src/diffusion/schedulers/types.js';
import { PROJECT_ROOT } from '../src/util/project.js';

const model = process.argv[2] ?? join(PROJECT_ROOT, 'test/fixtures/tiny-sd');
const pipeline = await loadPipeline(model, { provider: 'cpu', safetyChecker: false });
console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, Node ${process.version}`);
console.log(`model: ${model}`);

const base = { prompt: 'a dog in a batman costume', negativePrompt: '', seed: 1234n, cfg: 7, rng: 'cpu' as const, safetyCheck: false };

console.log('\nNode-side time per step at 512² (latents 1×4×64×64, UNet batch 2), excluding session.run:');
const steps = 30;
for (const scheduler of SCHEDULER_NAMES as readonly SchedulerName[]) {
  // One warm-up run so JIT compilation is not counted, then the measured run.
  await pipeline.generate({ ...base, scheduler, steps: 3, width: 512, height: 512 });
  const result = await pipeline.generate({ ...base, scheduler, steps, width: 512, height: 512 });
  const perStep = result.timings.nodeStepMs / steps;
  console.log(`  ${scheduler.padEnd(9)} ${perStep.toFixed(3)} ms/step  (UNet ${(result.timings.unetMs / steps).toFixed(1)} ms/step)  ${perStep <= 0.2 ? 'within' : 'OVER'} the 0.2 ms target`);
}

console.log('\nTiny model, seconds per 30-step image (text encoder + 30 UNet steps + VAE decode):');
for (const size of [128, 512]) {
  const result = await pipeline.generate({ ...base, steps: 30, width: size, height: size });
  const t = result.timings;
  console.log(
    `  ${size}x${size}: ${(t.totalMs / 1000).toFixed(2)} s  (text ${t.textEncoderMs.toFixed(0)} ms, denoise ${t.denoiseMs.toFixed(0)} ms, decode ${t.decodeMs.toFixed(0)} ms)`,
  );
}
await pipeline.model.release();
