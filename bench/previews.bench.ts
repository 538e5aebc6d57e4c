/**
 * Part of `npm run bench` (also `npm run bench:previews [-- TAESD_DECODER]`): the cost of one live preview, as the
 * bot makes it (preview.ts' LatentPreviewRenderer, CPU, one thread, WebP at the default 256 px), through the colour
 * map and through a TAESD decoder: the tiny random-weight test export (test/fixtures/taesd, 8 channels), or the
 * decoder given (e.g. the real taesd_decoder.onnx, 64 channels, or `/usr/bin/python3 scripts/make-taesd-fixture.py
 * --channels 64 --out /tmp/taesd64.onnx` for the real architecture with random weights).
 * Each figure is the median of 7 runs after 2 untimed ones, for one image and for a job's 4 images, at SD 1.5's 512²
 * (latents 64×64) and at the tests' 128².
 */
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { encodeBatchPreview, LatentPreviewRenderer, type PreviewOptions } from '../src/diffusion/preview.js';
import { PROJECT_ROOT } from '../src/util/project.js';

const decoderPath = process.argv[2] ?? join(PROJECT_ROOT, 'test/fixtures/taesd/taesd_decoder.onnx');
const options: PreviewOptions = { size: 256, format: 'webp' };
console.log(`\nLive preview cost (${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores; TAESD on one thread), ms per preview, median of 7:`);
console.log(`  TAESD decoder: ${decoderPath}`);

async function medianMs(run: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 2; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b)[3]!;
}

const renderer = new LatentPreviewRenderer({
  decoderPath,
  onFallback: (reason) => {
    throw new Error(reason);
  },
});
for (const side of [128, 512]) {
  for (const count of [1, 4]) {
    const shape = [count, 4, side / 8, side / 8] as [number, number, number, number];
    const latents = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37) * 2);
    const colourMap = await medianMs(() => encodeBatchPreview(latents, shape, options));
    const taesd = await medianMs(() => renderer.encodeBatch(latents, shape, options));
    console.log(`  ${side}², ${count} image${count > 1 ? 's' : ' '}: colour map ${colourMap.toFixed(1).padStart(6)} ms   TAESD ${taesd.toFixed(1).padStart(7)} ms   (${(taesd / colourMap).toFixed(1)}×)`);
  }
}
await renderer.release();
