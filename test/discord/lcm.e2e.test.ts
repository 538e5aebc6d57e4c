/**
 * `/imagine sampler:LCM` end to end, on a bot whose model is an LCM-distilled UNet (test/fixtures/tiny-lcm, its
 * `timestep_cond` input fed the guidance embedding) and whose previews decode through TAESD (model.previewDecoder,
 * the tiny test export): the member gives no steps or CFG and gets LCM's (4 steps, CFG 1.5); the image is the one
 * `imagine-bot generate` makes with the same settings.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { download, pngParameters, REPO_ROOT, Sandbox } from './harness.js';

const TINY_LCM = join(REPO_ROOT, 'test', 'fixtures', 'tiny-lcm');
const TAESD = join(REPO_ROOT, 'test', 'fixtures', 'taesd', 'taesd_decoder.onnx');

describe('/imagine sampler:LCM on an LCM model, with TAESD previews', () => {
  let sb: Sandbox;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'imagine-lcm-e2e-'));
    sb = await Sandbox.start({ config: { model: { previewDecoder: TAESD } }, env: { IMAGINE_MODEL: TINY_LCM } });
  });
  after(async () => {
    await sb?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test("LCM's steps and CFG when none are given, the LCM UNet's image, previews through TAESD", async () => {
    const prompt = 'a lighthouse at dusk';
    const id = sb.imagine(sb.people.bruno, { prompt, sampler: 'lcm', seed: '1234', size: '64x64' });
    const reply = (await sb.waitForResult(id, 120_000)).original!;
    const [parameters] = await pngParameters(reply);
    assert.match(parameters ?? '', /^Steps: 4, Sampler: LCM, CFG scale: 1\.5, Seed: 1234, Size: 64x64, Model: tiny-lcm/m);

    const out = join(work, 'cli');
    const result = await runCli([
      'generate', '--model', TINY_LCM, '--prompt', prompt, '--prompt-syntax', 'a1111', '--seed', '1234', '--steps', '4', '--cfg', '1.5',
      '--width', '64', '--height', '64', '--scheduler', 'lcm', '--provider', 'cpu', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const png = await download(reply.attachments.find((a) => a.content_type === 'image/png')!.url);
    assert.ok(pngWithoutTextChunks(png).equals(pngWithoutTextChunks(await readFile(join(out, '0.png')))), 'same pixels as the CLI');

    // The first step's latents always come with a preview due: the renderer opened TAESD for it, and never fell back.
    const opened = await sb.waitForLog((line) => line.msg === 'previews decode through TAESD', { timeoutMs: 30_000 });
    assert.equal(opened['file'], TAESD);
    assert.equal(sb.logs.filter((line) => typeof line.msg === 'string' && /TAESD preview/.test(line.msg)).length, 0, 'no fallback to the colour map');
  });
});
