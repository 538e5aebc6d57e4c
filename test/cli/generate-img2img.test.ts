/** `generate --init-image FILE --strength X`: img2img through the CLI, its PNG parameters, and its one-line errors. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { readTextChunks } from '../../src/diffusion/png.js';
import { runCli } from '../helpers/cli.js';
import { TINY_MODEL } from '../helpers/reference.js';

let work: string;
let initImage: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'imagine-img2img-'));
  initImage = join(work, 'init.png');
  // 128×64: with no --width/--height the output takes the image's own size, as diffusers' img2img does.
  await sharp({ create: { width: 128, height: 64, channels: 3, background: { r: 30, g: 160, b: 220 } } }).png().toFile(initImage);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const BASE = ['generate', '--model', TINY_MODEL, '--prompt', 'a blue lake', '--seed', '9', '--steps', '4', '--scheduler', 'euler', '--provider', 'cpu'];

function assertOneLineError(result: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0, 'exit code');
  const lines = result.stderr.trim().split('\n').filter((line) => !line.startsWith('(run with --help'));
  const errorLines = lines.filter((line) => line.startsWith('error:'));
  assert.equal(errorLines.length, 1, `one error line, got:\n${result.stderr}`);
  assert.equal(lines.at(-1), errorLines[0], 'the error line comes last');
  assert.match(errorLines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

describe('imagine-bot generate --init-image', () => {
  test('writes an image of the init image\'s size with "Denoising strength" in its parameters; the strength changes it', async () => {
    const outHalf = join(work, 'half');
    const half = await runCli([...BASE, '--init-image', initImage, '--strength', '0.5', '--out', outHalf]);
    assert.equal(half.code, 0, half.stderr);
    const png = await readFile(join(outHalf, '0.png'));
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.width, meta.height], [128, 64]);
    assert.match(readTextChunks(png).parameters ?? '', /Size: 128x64, .*Denoising strength: 0\.5(,|$)/m);

    const outDefault = join(work, 'default');
    const byDefault = await runCli([...BASE, '--init-image', initImage, '--width', '64', '--height', '64', '--out', outDefault]);
    assert.equal(byDefault.code, 0, byDefault.stderr);
    const defaultPng = await readFile(join(outDefault, '0.png'));
    assert.deepEqual([(await sharp(defaultPng).metadata()).width, (await sharp(defaultPng).metadata()).height], [64, 64], 'given sizes win; the image is resized');
    assert.match(readTextChunks(defaultPng).parameters ?? '', /Denoising strength: 0\.75(,|$)/m, "diffusers' default strength");
  });

  test('a missing file, a file that is no image, and a folder are one-line errors before the model loads', async () => {
    assertOneLineError(await runCli([...BASE, '--init-image', join(work, 'nope.png'), '--out', join(work, 'x')]), /cannot read --init-image .*nope\.png: no such file\./);
    const text = join(work, 'notes.png');
    await writeFile(text, 'not an image');
    assertOneLineError(await runCli([...BASE, '--init-image', text, '--out', join(work, 'x')]), /--init-image .*notes\.png is not an image/);
    assertOneLineError(await runCli([...BASE, '--init-image', work, '--out', join(work, 'x')]), /cannot read --init-image .*: it is a folder\./);
  });

  test('a strength outside (0, 1], or one without --init-image, is a one-line error', async () => {
    for (const strength of ['0', '1.5', '-0.2']) {
      assertOneLineError(await runCli([...BASE, '--init-image', initImage, '--strength', strength, '--out', join(work, 'x')]), /strength must be a number greater than 0 and at most 1/);
    }
    assertOneLineError(await runCli([...BASE, '--strength', 'lots', '--init-image', initImage, '--out', join(work, 'x')]), /strength must be a number/);
    assertOneLineError(await runCli([...BASE, '--strength', '0.5', '--out', join(work, 'x')]), /--strength needs --init-image/);
  });
});
