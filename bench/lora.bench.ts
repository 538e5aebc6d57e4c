/**
 * `npm run bench` (second part) / `npm run bench:lora [MODEL_FOLDER LORA_FOLDER NAME]`: what loading a LoRA set costs.
 *
 * 1. On the tiny test model (default) or a given model folder and LoRA: the time to merge a LoRA set into the text
 *    encoder and the UNet and open both sessions (what a prompt with a set not yet cached waits for, lora/sessions.ts),
 *    and the process's RSS growth for the set kept open; then a cached set's lookup.
 * 2. The merge arithmetic alone at SD 1.5's sizes (every attention, feed-forward and proj_in/out module of the UNet
 *    and the text encoder's q/k/v/out/fc1/fc2, as a kohya LoRA of rank 32 and 128 adapts them), on constant weights (the arithmetic does not depend on the values):
 *    what a real LoRA's merge costs on this CPU before ORT's session creation, without a real model at hand.
 */
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { loadPipeline } from '../src/diffusion/load.js';
import { LoraLibrary } from '../src/diffusion/lora/library.js';
import { plusLowRankProduct } from '../src/diffusion/lora/merge.js';
import { LoraSessionCache, type ResolvedLora } from '../src/diffusion/lora/sessions.js';
import { PROJECT_ROOT } from '../src/util/project.js';

const modelFolder = process.argv[2] ?? join(PROJECT_ROOT, 'test/fixtures/tiny-sd');
const loraFolder = process.argv[3] ?? join(PROJECT_ROOT, 'test/fixtures/loras');
const loraName = process.argv[4] ?? 'tiny-kohya';
const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;

console.log(`\nLoRA load (merge + text encoder and UNet session creation), CPU: ${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores`);
console.log(`model: ${modelFolder}, LoRA: ${loraName} from ${loraFolder}`);
const pipeline = await loadPipeline(modelFolder, { provider: 'cpu', safetyChecker: false });
const library = new LoraLibrary(loraFolder);
const file = await library.resolve(loraName);
const hash = await library.hash(file.file);
const cache = new LoraSessionCache((part, rewrite) => pipeline.model.openPartWith(part, rewrite), 4);
const gc = (globalThis as { gc?: () => void }).gc;
const loadTimes: number[] = [];
const rssBefore = process.memoryUsage().rss;
// Three multipliers: three sets, each merged and opened, all kept (capacity 4).
for (const multiplier of [0.5, 0.8, 1]) {
  const set: ResolvedLora[] = [{ name: loraName, file: file.file, hash, teMultiplier: multiplier, unetMultiplier: multiplier }];
  const started = performance.now();
  await cache.partsFor(set);
  loadTimes.push(performance.now() - started);
}
gc?.();
const rssAfter = process.memoryUsage().rss;
const started = performance.now();
await cache.partsFor([{ name: loraName, file: file.file, hash, teMultiplier: 1, unetMultiplier: 1 }]);
const cachedMs = performance.now() - started;
console.log(`  load of a new set: ${loadTimes.map((ms) => `${ms.toFixed(0)} ms`).join(', ')} (3 sets)`);
console.log(`  RSS growth for 3 sets kept open: ${mb(rssAfter - rssBefore)} (${mb((rssAfter - rssBefore) / 3)} per set${gc ? '' : '; run node with --expose-gc for a steadier figure'})`);
console.log(`  cached set: ${cachedMs.toFixed(2)} ms`);
await cache.release();
await pipeline.release();
await pipeline.model.release();

// SD 1.5's adapted modules: [out, in, layout]; MatMul weights are stored [in, out], the 1×1 convs [out, in].
type Module = [number, number, 'in-out' | 'out-in'];
const sd15Modules: Module[] = [];
for (const width of [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320]) {
  const square: Module = [width, width, 'in-out'];
  // attn1 q k v out, attn2 q out; attn2 k v (768 → width); ff.net.0.proj (GEGLU: width → 8·width), ff.net.2; proj_in, proj_out
  sd15Modules.push(square, square, square, square, square, square, [width, 768, 'in-out'], [width, 768, 'in-out'], [8 * width, width, 'in-out'], [width, 4 * width, 'in-out'], [width, width, 'out-in'], [width, width, 'out-in']);
}
for (let layer = 0; layer < 12; layer++) {
  sd15Modules.push([768, 768, 'in-out'], [768, 768, 'in-out'], [768, 768, 'in-out'], [768, 768, 'in-out'], [3072, 768, 'in-out'], [768, 3072, 'in-out']);
}
console.log(`\nMerge arithmetic alone at SD 1.5 sizes (${sd15Modules.length} modules: 16 UNet transformer blocks with proj_in/out, 12 text-encoder layers)`);
for (const rank of [32, 128]) {
  let ms = 0;
  for (const [out, inner, layout] of sd15Modules) {
    const weight = new Float32Array(out * inner).fill(0.1);
    const up = new Float32Array(out * rank).fill(0.01);
    const down = new Float32Array(rank * inner).fill(0.02);
    const started = performance.now();
    await plusLowRankProduct(weight, layout, out, up, down, rank, 0.5);
    ms += performance.now() - started;
  }
  console.log(`  rank ${rank}: ${(ms / 1000).toFixed(2)} s`);
}
