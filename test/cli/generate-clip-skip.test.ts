/** `generate --clip-skip`: 1 is the default, byte for byte; 2 changes the image and is recorded as A1111 records it. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readTextChunks } from '../../src/diffusion/png.js';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { TINY_MODEL } from '../helpers/reference.js';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'imagine-clip-skip-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function generate(name: string, extra: string[]): Promise<Buffer> {
  const out = join(work, name);
  const result = await runCli([
    'generate', '--model', TINY_MODEL, '--prompt', 'a red house by a river', '--negative', 'blurry', '--seed', '5', '--steps', '3',
    '--width', '64', '--height', '64', '--scheduler', 'euler', '--provider', 'cpu', '--out', out, ...extra,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return readFile(join(out, '0.png'));
}

test('--clip-skip 1 equals the default; --clip-skip 2 differs and writes "Clip skip: 2"', async () => {
  const byDefault = await generate('default', []);
  const one = await generate('one', ['--clip-skip', '1']);
  assert.ok(one.equals(byDefault), 'the same PNG bytes, parameters chunk included');
  assert.doesNotMatch(readTextChunks(one).parameters ?? '', /Clip skip/, 'A1111 writes nothing for clip skip 1');
  const two = await generate('two', ['--clip-skip', '2']);
  assert.ok(!pngWithoutTextChunks(two).equals(pngWithoutTextChunks(byDefault)), 'clip skip 2 changes the image');
  assert.match(readTextChunks(two).parameters ?? '', /, Clip skip: 2(,|$)/m);
});

test('--clip-skip 3 is refused by the option parser', async () => {
  const result = await runCli(['generate', '--model', TINY_MODEL, '--prompt', 'x', '--clip-skip', '3', '--out', join(work, 'x')]);
  assert.notEqual(result.code, 0);
  assert.match(result.stderr, /clip skip must be between 1 and 2/);
});
