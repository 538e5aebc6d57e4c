/**
 * `node --import tsx bench/schedulers.bench.ts`: the scheduler and noise share of a denoising step at SD 1.5's
 * 512² latent size (1×4×64×64 = 16384 values), without any model: scaleModelInput + step per scheduler, and one
 * torch-identical randn of that size per generator. These are part of the engine's 0.2 ms Node-side step budget.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createNoiseGenerator } from '../src/diffusion/rng/index.js';
import { createScheduler, SCHEDULER_NAMES } from '../src/diffusion/schedulers/index.js';
import type { SchedulerConfig, SchedulerName } from '../src/diffusion/schedulers/types.js';

const configPath = fileURLToPath(new URL('../test/fixtures/tiny-sd/scheduler/scheduler_config.json', import.meta.url));
const config = JSON.parse(readFileSync(configPath, 'utf8')) as SchedulerConfig;
const COUNT = 4 * 64 * 64;
const STEPS = 50;
const ROUNDS = 20;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

// A reference point for this machine's speed (and its current load): the cheapest possible step loop.
{
  const a = new Float32Array(COUNT).map((_, i) => Math.cos(i));
  const b = new Float32Array(COUNT).map((_, i) => Math.sin(i));
  const out = new Float32Array(COUNT);
  const times: number[] = [];
  for (let round = 0; round < 300; round++) {
    const started = performance.now();
    for (let i = 0; i < COUNT; i++) out[i] = a[i]! + b[i]! * 0.5;
    if (round >= 50) times.push(performance.now() - started);
  }
  console.log(`Baseline: one x + ε·dt loop over ${COUNT} floats takes ${median(times).toFixed(3)} ms here.\n`);
}

console.log(`Scheduler time per step at 64×64×4 latents (scaleModelInput + step), median of ${ROUNDS} runs of ${STEPS} steps:`);
const variants: [SchedulerName, boolean][] = SCHEDULER_NAMES.map((name) => [name, false]);
variants.push(['dpmpp_2m', true]);
for (const [name, karras] of variants) {
  const scheduler = createScheduler(name, config, { karras });
  const generator = createNoiseGenerator('cpu', 1n);
  const modelOutput = new Float32Array(COUNT).map((_, i) => Math.sin(i));
  const perStep: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    scheduler.setTimesteps(STEPS);
    let latents: Float32Array = generator.randn(COUNT);
    let elapsed = 0;
    for (const t of scheduler.timesteps) {
      // The noise draw (Euler a) is left out: the pipeline does it with prepareStep while the UNet runs.
      scheduler.prepareStep?.(generator, COUNT);
      const started = performance.now();
      scheduler.scaleModelInput(latents, t);
      latents = scheduler.step(modelOutput, t, latents, generator);
      elapsed += performance.now() - started;
    }
    perStep.push(elapsed / scheduler.timesteps.length);
  }
  const label = `${name}${karras ? ' karras' : ''}`;
  const note = name === 'euler_a' ? '  (+ one randn of 16384 per step, drawn by prepareStep during the UNet run)' : '';
  console.log(`  ${label.padEnd(16)} ${median(perStep).toFixed(3)} ms${note}`);
}

console.log('\ntorch-identical randn of 16384 values (initial latents), median of 200:');
for (const device of ['cpu', 'cuda'] as const) {
  const generator = createNoiseGenerator(device, 1055747n);
  const target = new Float32Array(COUNT);
  const times: number[] = [];
  for (let i = 0; i < 220; i++) {
    const started = performance.now();
    generator.randnInto(target);
    if (i >= 20) times.push(performance.now() - started);
  }
  console.log(`  ${device.padEnd(5)} ${median(times).toFixed(3)} ms`);
}
