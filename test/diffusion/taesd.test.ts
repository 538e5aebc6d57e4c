/**
 * TAESD previews: our decode of the tiny TAESD export equals the torch module's image (scripts/make-taesd-fixture.py
 * wrote it), in both output conventions, and the preview renderer uses it or, when it cannot, the colour map.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { encodeBatchPreview, LatentPreviewRenderer } from '../../src/diffusion/preview.js';
import { openSession } from '../../src/diffusion/providers.js';
import { TaesdDecoder } from '../../src/diffusion/taesd.js';
import { FIXTURES, TINY_MODEL, maxAbsDiff } from '../helpers/reference.js';

const TAESD = join(FIXTURES, 'taesd');
const expected = JSON.parse(readFileSync(join(TAESD, 'expected.json'), 'utf8')) as {
  latentShape: [number, number, number, number];
  latents: number[];
  imageShape: [number, number, number, number];
  image: number[];
};
const latents = Float32Array.from(expected.latents);
const cpuSession = (file: string) => openSession(file, 'cpu');

const opened: TaesdDecoder[] = [];
after(async () => {
  for (const decoder of opened) await decoder.release();
});

for (const [label, path, signed] of [
  ["taesd.py's export (input latents, image in [0, 1])", join(TAESD, 'taesd_decoder.onnx'), false],
  ["diffusers' AutoencoderTiny layout (vae_decoder/model.onnx, image in [−1, 1])", TAESD, true],
] as const) {
  test(`TAESD decode equals the torch module's image: ${label}`, async () => {
    const decoder = await TaesdDecoder.open(path, cpuSession);
    opened.push(decoder);
    assert.equal(decoder.signedOutput, signed);
    const { image, dims } = await decoder.decodeFloats(latents, expected.latentShape);
    assert.deepEqual(dims, expected.imageShape);
    const difference = maxAbsDiff(image, expected.image);
    assert.ok(difference < 1e-5, `max abs difference ${difference}`);

    // The 8-bit image is the clamped float image, HWC.
    const [rgbImage] = await decoder.decode(latents, expected.latentShape);
    const [, , height, width] = expected.imageShape;
    assert.equal(rgbImage!.width, width);
    assert.equal(rgbImage!.height, height);
    const plane = width * height;
    for (const p of [0, 17, plane - 1]) {
      for (let c = 0; c < 3; c++) {
        const value = Math.min(1, Math.max(0, expected.image[c * plane + p]!));
        assert.ok(Math.abs(rgbImage!.rgb[p * 3 + c]! - value * 255) <= 0.5 + 1e-3, `pixel ${p} channel ${c}`);
      }
    }
  });
}

test('the renderer previews a batch through TAESD at 8× the latent size, each tile its own image', async () => {
  const fallbacks: string[] = [];
  const renderer = new LatentPreviewRenderer({ decoderPath: join(TAESD, 'taesd_decoder.onnx'), createSession: cpuSession, onFallback: (reason) => fallbacks.push(reason) });
  try {
    // Two images: the reference latents and their negation, side by side.
    const [, channels, h, w] = expected.latentShape;
    const pair = new Float32Array(2 * channels * h * w);
    pair.set(latents, 0);
    for (let i = 0; i < latents.length; i++) pair[latents.length + i] = -latents[i]!;
    const shape = [2, channels, h, w] as [number, number, number, number];
    const png = await renderer.encodeBatch(pair, shape, { size: 2 * 8 * w, format: 'jpeg', quality: 100 });
    assert.deepEqual(fallbacks, []);
    assert.equal(renderer.method, 'taesd');
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, 2 * 8 * w);
    assert.equal(info.height, 8 * h);

    const decoder = await TaesdDecoder.open(join(TAESD, 'taesd_decoder.onnx'), cpuSession);
    opened.push(decoder);
    const images = await decoder.decode(pair, shape);
    // Each tile is its own image: near it (JPEG's chroma subsampling blurs colour edges), and far from the other one.
    const tileDifference = (tile: number, image: (typeof images)[number]) => {
      let total = 0;
      for (let y = 0; y < image.height; y++) {
        for (let x = 0; x < image.width; x++) {
          for (let c = 0; c < 3; c++) total += Math.abs(data[(y * info.width + tile * image.width + x) * 3 + c]! - image.rgb[(y * image.width + x) * 3 + c]!);
        }
      }
      return total / (image.width * image.height * 3);
    };
    for (const tile of [0, 1]) {
      const own = tileDifference(tile, images[tile]!);
      const other = tileDifference(tile, images[1 - tile]!);
      assert.ok(own < 10 && own < other / 3, `tile ${tile}: mean difference ${own} from its image, ${other} from the other`);
    }
    assert.notDeepEqual(images[0]!.rgb, images[1]!.rgb);
  } finally {
    await renderer.release();
  }
});

test('no decoder configured: the colour map, and nothing reported', async () => {
  const fallbacks: string[] = [];
  const renderer = new LatentPreviewRenderer({ decoderPath: '', onFallback: (reason) => fallbacks.push(reason) });
  const options = { size: 48, format: 'webp' as const };
  assert.deepEqual(await renderer.encodeBatch(latents, expected.latentShape, options), await encodeBatchPreview(latents, expected.latentShape, options));
  assert.equal(renderer.method, 'colour map');
  assert.deepEqual(fallbacks, []);
});

for (const [label, decoderPath, why] of [
  ['a missing decoder file', join(TAESD, 'missing.onnx'), /does not exist/],
  // Opens (one input, one output) but cannot take latents: the failure comes at the first decode.
  ['a graph that is not a TAESD decoder', join(TINY_MODEL, 'text_encoder/model.onnx'), /TAESD preview decoding failed/],
] as const) {
  test(`${label}: previews fall back to the colour map, reported once, the job's preview still made`, async () => {
    const fallbacks: string[] = [];
    const renderer = new LatentPreviewRenderer({ decoderPath, createSession: cpuSession, onFallback: (reason) => fallbacks.push(reason) });
    try {
      const options = { size: 48, format: 'webp' as const };
      const colourMap = await encodeBatchPreview(latents, expected.latentShape, options);
      assert.deepEqual(await renderer.encodeBatch(latents, expected.latentShape, options), colourMap);
      assert.deepEqual(await renderer.encodeBatch(latents, expected.latentShape, options), colourMap);
      assert.equal(fallbacks.length, 1, fallbacks.join('\n'));
      assert.match(fallbacks[0]!, why);
      assert.equal(renderer.method, 'colour map');
    } finally {
      await renderer.release();
    }
  });
}
