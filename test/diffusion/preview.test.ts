/** The batch preview: a job's images side by side in one picture, each tile the image's own colour-mapped latents. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { encodeBatchPreview, latentsToRgb } from '../../src/diffusion/preview.js';

/** n images of 4 × 8 × 8 latents, image i's channels all equal to its own constant values, so each tile is one colour. */
function constantLatents(count: number): { latents: Float32Array; shape: [number, number, number, number] } {
  const plane = 8 * 8;
  const latents = new Float32Array(count * 4 * plane);
  for (let image = 0; image < count; image++) {
    for (let channel = 0; channel < 4; channel++) latents.fill(((image + 1) * (channel % 2 ? -0.5 : 0.7)) / count, (image * 4 + channel) * plane, (image * 4 + channel + 1) * plane);
  }
  return { latents, shape: [count, 4, 8, 8] };
}

for (const [count, columns, rows] of [[1, 1, 1], [2, 2, 1], [3, 2, 2], [4, 2, 2]] as const) {
  test(`${count} image(s): a ${columns}×${rows} grid, longest side the preview size, each tile its image's colours`, async () => {
    const { latents, shape } = constantLatents(count);
    const png = await encodeBatchPreview(latents, shape, { size: 64, format: 'jpeg', quality: 100 });
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const scale = 64 / Math.max(columns, rows);
    assert.equal(info.width, columns * scale);
    assert.equal(info.height, rows * scale);
    for (let image = 0; image < count; image++) {
      const expected = latentsToRgb(latents, shape, image).subarray(0, 3);
      // The tile's centre, away from the cubic filter's blending with its neighbours.
      const x = Math.floor(((image % columns) + 0.5) * scale);
      const y = Math.floor((Math.floor(image / columns) + 0.5) * scale);
      const offset = (y * info.width + x) * 3;
      for (let c = 0; c < 3; c++) assert.ok(Math.abs(data[offset + c]! - expected[c]!) <= 4, `image ${image} channel ${c}: ${data[offset + c]} vs ${expected[c]}`);
    }
  });
}
