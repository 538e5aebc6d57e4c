import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { crc32, encodePng, formatInfotext, readTextChunks, tiHashesInfotext } from '../../src/diffusion/png.js';

/** Walks every chunk and recomputes its CRC, so a wrong CRC in an inserted chunk fails here. */
function chunks(png: Buffer): { type: string; data: Buffer; crcOk: boolean }[] {
  const found = [];
  let offset = 8;
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    const crc = png.readUInt32BE(offset + 8 + length);
    found.push({ type, data, crcOk: crc === crc32(png, offset + 4, offset + 8 + length) });
    offset += 12 + length;
  }
  return found;
}

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(Buffer.from('123456789', 'latin1')), 0xcbf43926);
});

test('A1111 infotext layout', () => {
  const text = formatInfotext({
    prompt: 'a dog in a batman costume',
    negativePrompt: 'blurry',
    steps: 30,
    sampler: 'Euler a',
    cfg: 7,
    seed: 123456789012345678n,
    width: 512,
    height: 768,
    model: 'stable-diffusion-v1-5',
  });
  assert.equal(
    text,
    'a dog in a batman costume\nNegative prompt: blurry\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 123456789012345678, Size: 512x768, Model: stable-diffusion-v1-5',
  );
  assert.equal(
    formatInfotext({ prompt: 'x', steps: 1, sampler: 'DDIM', cfg: 7.5, seed: 1n, width: 64, height: 64, model: 'm' }),
    'x\nSteps: 1, Sampler: DDIM, CFG scale: 7.5, Seed: 1, Size: 64x64, Model: m',
  );
});

test('PNG keeps its pixels and gains a parameters chunk with a valid CRC', async () => {
  const width = 16;
  const height = 8;
  const rgb = new Uint8Array(width * height * 3).map((_, i) => (i * 37) % 256);
  const png = await encodePng(rgb, width, height, 'a cat\nSteps: 1, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 16x8, Model: tiny');
  const all = chunks(png);
  assert.ok(all.every((c) => c.crcOk), 'every chunk CRC is valid');
  assert.equal(all.at(-1)?.type, 'IEND');
  const text = all.find((c) => c.type === 'tEXt');
  assert.ok(text, 'has a tEXt chunk');
  assert.equal(readTextChunks(png).parameters?.split('\n')[0], 'a cat');
  // sharp (libpng) decodes the file and returns the same pixels.
  const decoded = await sharp(png).raw().toBuffer();
  assert.deepEqual(new Uint8Array(decoded), rgb);
  // The IDAT stream is intact zlib.
  const idat = Buffer.concat(all.filter((c) => c.type === 'IDAT').map((c) => c.data));
  assert.ok(inflateSync(idat).length > 0);
});

test('non-Latin-1 prompts are written as UTF-8 iTXt and read back unchanged', async () => {
  const prompt = '宇宙飛行士 riding a horse, ünïcödé 🐴';
  const png = await encodePng(new Uint8Array(8 * 8 * 3), 8, 8, `${prompt}\nSteps: 1`);
  const all = chunks(png);
  assert.ok(all.some((c) => c.type === 'iTXt' && c.crcOk));
  assert.equal(readTextChunks(png).parameters, `${prompt}\nSteps: 1`);
});

test("TI hashes as A1111's sd_hijack_clip.py writes them: names without ':' and ',', one quoted field, none when unused", () => {
  assert.deepEqual(tiHashesInfotext([]), {});
  assert.deepEqual(tiHashesInfotext(undefined), {});
  const extra = tiHashesInfotext([
    { name: 'EasyNegative', hash: 'c74b4e810b03' },
    { name: 'bad:name,v2', hash: '0123456789ab' },
  ]);
  assert.deepEqual(extra, { 'TI hashes': 'EasyNegative: c74b4e810b03, badnamev2: 0123456789ab' });
  const text = formatInfotext({ prompt: 'a cat', steps: 20, sampler: 'Euler', cfg: 7, seed: 1n, width: 512, height: 512, model: 'sd15', extra });
  // A1111 quotes a value holding its separators (infotext_utils.quote: json.dumps).
  assert.match(text, /, Model: sd15, TI hashes: "EasyNegative: c74b4e810b03, badnamev2: 0123456789ab"$/);
});
