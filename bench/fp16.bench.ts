/**
 * How fast float32 ⇄ float16 conversion is for the tensors the denoising loop converts every step.
 * Run: node --import tsx bench/fp16.bench.ts   (or, after `npm run build`: node dist/bench/fp16.bench.js)
 *
 * Sizes: 65536 values (a 2×4×64×64 CFG latent batch at 512², UNet input and output, converted every step) and
 * 118272 values (2×77×768 text embeddings for a CFG batch, converted once per image).
 * Target: well under 0.1 ms for 65536 values.
 */
import { performance } from 'node:perf_hooks';

import { toFloat16Into, toFloat32Into } from '../src/diffusion/fp16.js';

function measure(label: string, count: number, run: () => void): void {
  for (let i = 0; i < 200; i++) run(); // let the JIT optimise the loop first
  const rounds = 2000;
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    run();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const median = times[rounds >> 1]!;
  const p90 = times[Math.floor(rounds * 0.9)]!;
  const perValueNs = (median * 1e6) / count;
  console.log(
    `${label.padEnd(34)} ${String(count).padStart(7)} values  median ${median.toFixed(4)} ms  p90 ${p90.toFixed(4)} ms  ` +
      `(${perValueNs.toFixed(2)} ns/value)`,
  );
}

for (const [what, count] of [
  ['latents 2×4×64×64', 2 * 4 * 64 * 64],
  ['65536 values (2×4×64×128)', 65536],
  ['text embeddings 2×77×768', 2 * 77 * 768],
] as const) {
  const floats = new Float32Array(count);
  // Typical latent magnitudes (a few units), with some tiny and some huge values to exercise every branch.
  for (let i = 0; i < count; i++) floats[i] = Math.sin(i * 12.9898) * 4;
  for (let i = 0; i < count; i += 997) floats[i] = 1e-6;
  for (let i = 5; i < count; i += 4999) floats[i] = 1e6;
  const halves = new Uint16Array(count);
  const back = new Float32Array(count);
  measure(`float32 → float16, ${what}`, count, () => toFloat16Into(floats, halves));
  measure(`float16 → float32, ${what}`, count, () => toFloat32Into(halves, back));
}
