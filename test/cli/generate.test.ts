import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { readTextChunks } from '../../src/diffusion/png.js';
import { runCli } from '../helpers/cli.js';
import { fractionWithin, readReferencePng, TINY_MODEL } from '../helpers/reference.js';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'imagine-cli-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/**
 * A failed command exits non-zero and explains itself in exactly one `error:` line, the last thing it prints
 * (loading progress may come before it), with no stack trace.
 */
function assertOneLineError(result: { code: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(result.code, 0, 'exit code');
  const lines = result.stderr.trim().split('\n').filter((line) => !line.startsWith('(run with --help'));
  const errorLines = lines.filter((line) => line.startsWith('error:'));
  assert.equal(errorLines.length, 1, `one error line, got:\n${result.stderr}`);
  assert.equal(lines.at(-1), errorLines[0], 'the error line comes last');
  assert.match(errorLines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

describe('imagine-bot generate', () => {
  test('reproduces reference case p1 through the CLI and writes A1111 parameters', async () => {
    const out = join(work, 'p1');
    const result = await runCli([
      'generate', '--model', TINY_MODEL, '--prompt', 'dog in batman costume', '--seed', '1055747', '--steps', '30',
      '--cfg', '7', '--width', '128', '--height', '128', '--scheduler', 'euler', '--rng', 'cpu', '--provider', 'cpu', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const png = await readFile(join(out, '0.png'));
    const { data } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const expected = await readReferencePng('p1', 0);
    assert.ok(fractionWithin(new Uint8Array(data), expected.rgb, 1) >= 0.999);
    const parameters = readTextChunks(png).parameters ?? '';
    assert.match(parameters, /^dog in batman costume\nSteps: 30, Sampler: Euler, CFG scale: 7, Seed: 1055747, Size: 128x128, Model: tiny-sd/);
  });

  test('--fuse-attention says what it fused and still reproduces p1', async () => {
    const out = join(work, 'p1-fused');
    const result = await runCli([
      'generate', '--model', TINY_MODEL, '--prompt', 'dog in batman costume', '--seed', '1055747', '--steps', '30',
      '--cfg', '7', '--width', '128', '--height', '128', '--scheduler', 'euler', '--provider', 'cpu', '--fuse-attention', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^unet: 12 attention block\(s\) fused into MultiHeadAttention/m);
    const { data } = await sharp(await readFile(join(out, '0.png'))).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.ok(fractionWithin(new Uint8Array(data), (await readReferencePng('p1', 0)).rgb, 1) >= 0.999);
  });

  test('batch writes 0.png … N-1.png and prints a random seed when none is given', async () => {
    const out = join(work, 'batch');
    const result = await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'a cat', '--steps', '2', '--width', '64', '--height', '64', '--batch', '2', '--provider', 'cpu', '--out', out]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /^seed: \d+$/m);
    for (const name of ['0.png', '1.png']) assert.ok((await readFile(join(out, name))).length > 100);
  });

  test('unknown scheduler is a one-line error', async () => {
    const result = await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'x', '--scheduler', 'dpm_fast', '--out', join(work, 'x')]);
    assertOneLineError(result, /dpm_fast.*(pndm|euler)/);
  });

  test('size not a multiple of 8 is a one-line error', async () => {
    const result = await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'x', '--width', '100', '--out', join(work, 'x'), '--provider', 'cpu']);
    assertOneLineError(result, /multiples? of 8/);
  });

  test('bad seed and bad steps are one-line errors', async () => {
    assertOneLineError(await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'x', '--seed', '18446744073709551616', '--out', join(work, 'x')]), /seed/);
    assertOneLineError(await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'x', '--steps', 'many', '--out', join(work, 'x')]), /steps/);
  });

  test('a missing model file is a one-line error naming the file', async () => {
    const broken = join(work, 'broken-model');
    await cp(TINY_MODEL, broken, { recursive: true });
    await rm(join(broken, 'vae_decoder', 'model.onnx'));
    const result = await runCli(['generate', '--model', broken, '--prompt', 'x', '--steps', '1', '--width', '64', '--height', '64', '--provider', 'cpu', '--out', join(work, 'y')]);
    assertOneLineError(result, /vae_decoder\/model\.onnx/);
  });

  test('missing external UNet weights and a corrupt ONNX file are one-line errors naming the file', async () => {
    const noWeights = join(work, 'no-weights');
    await cp(TINY_MODEL, noWeights, { recursive: true });
    await rm(join(noWeights, 'unet', 'weights.pb'));
    assertOneLineError(
      await runCli(['generate', '--model', noWeights, '--prompt', 'x', '--steps', '1', '--width', '64', '--height', '64', '--provider', 'cpu', '--out', join(work, 'z')]),
      /unet\/model\.onnx.*weights/,
    );
    const corrupt = join(work, 'corrupt');
    await cp(TINY_MODEL, corrupt, { recursive: true });
    await writeFile(join(corrupt, 'text_encoder', 'model.onnx'), 'not an onnx file');
    assertOneLineError(
      await runCli(['generate', '--model', corrupt, '--prompt', 'x', '--steps', '1', '--width', '64', '--height', '64', '--provider', 'cpu', '--out', join(work, 'z')]),
      /text_encoder\/model\.onnx/,
    );
  });

  test('a folder that does not exist is a one-line error', async () => {
    assertOneLineError(await runCli(['generate', '--model', join(work, 'nope'), '--prompt', 'x', '--provider', 'cpu', '--out', join(work, 'z')]), /nope.*does not exist/);
  });
});

describe('imagine-bot generate checks its arguments before it opens a model file', () => {
  /**
   * An existing folder with no model in it: had generate tried to load it, the error would name model_index.json
   * (or another model file) and loading lines would come first. The validation error alone on stderr proves that no
   * model file was opened.
   */
  let emptyModel: string;
  before(async () => {
    emptyModel = join(work, 'empty-model');
    await mkdir(emptyModel, { recursive: true });
  });

  async function assertRefusedBeforeLoading(args: string[], pattern: RegExp): Promise<void> {
    const result = await runCli(['generate', '--model', emptyModel, '--prompt', 'x', '--provider', 'cpu', ...args]);
    assertOneLineError(result, pattern);
    const lines = result.stderr.trim().split('\n').filter((line) => !line.startsWith('(run with --help'));
    assert.deepEqual(lines.length, 1, `only the error, nothing loaded first:\n${result.stderr}`);
    assert.doesNotMatch(result.stderr, /model_index\.json|\.onnx/);
  }

  test('--out naming a file, or a path under a file, is refused', async () => {
    const file = join(work, 'a-file.txt');
    await writeFile(file, 'not a folder');
    await assertRefusedBeforeLoading(['--out', file], /^error: cannot write the images to --out .*a-file\.txt: it is a file, not a folder\.$/);
    await assertRefusedBeforeLoading(['--out', join(file, 'images')], /^error: cannot write the images to --out .*a-file\.txt\/images: a file is in the way of the folder\.$/);
  });

  test('--cfg -3, --width 8, --height 100 and --steps 0 are refused', async () => {
    await assertRefusedBeforeLoading(['--cfg', '-3', '--out', join(work, 'v')], /^error: cfg must be a number from 0 to 100 \(got -3\)\.$/);
    await assertRefusedBeforeLoading(['--width', '8', '--out', join(work, 'v')], /^error: width must be at least 64 pixels \(got 8\)\.$/);
    await assertRefusedBeforeLoading(['--height', '100', '--out', join(work, 'v')], /^error: height must be a multiple of 8 \(got 100\)\.$/);
    await assertRefusedBeforeLoading(['--steps', '0', '--out', join(work, 'v')], /steps must be between 1 and 1000 \(got 0\)/);
  });

  test('--seed -1 means a random seed (as in A1111), printed and written into the PNG', async () => {
    const out = join(work, 'seed-minus-one');
    const result = await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'a cat', '--seed', '-1', '--steps', '1', '--width', '64', '--height', '64', '--provider', 'cpu', '--out', out]);
    assert.equal(result.code, 0, result.stderr);
    const printed = /^seed: (\d+)$/m.exec(result.stderr)?.[1];
    assert.ok(printed, result.stderr);
    assert.match(readTextChunks(await readFile(join(out, '0.png'))).parameters ?? '', new RegExp(`Seed: ${printed},`));
    // Other negative seeds stay errors.
    assertOneLineError(await runCli(['generate', '--model', emptyModel, '--prompt', 'x', '--seed', '-2', '--out', out]), /seed/i);
  });
});
