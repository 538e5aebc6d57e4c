/**
 * `models pull --preview-decoder`: a TAESD repository's ONNX decoder (and nothing else of it) into the Hub cache, the
 * printed folder usable as model.previewDecoder; a repository without one is refused before any download.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runModelsPull } from '../../src/cli/models.js';
import { loadConfig } from '../../src/config/load.js';
import { openSession } from '../../src/diffusion/providers.js';
import { TaesdDecoder } from '../../src/diffusion/taesd.js';
import { HubError } from '../../src/hub/errors.js';
import { pullModel } from '../../src/hub/pull.js';
import { startFakeHub } from './hub-server.js';

const TAESD_FIXTURE = new URL('../fixtures/taesd/', import.meta.url).pathname;

test('a TAESD repo: its decoders only (not its encoder, weights in other formats, README), and the folder opens as the preview decoder', async (t) => {
  const hub = await startFakeHub({
    repo: 'test-org/taesd',
    folder: TAESD_FIXTURE,
    extraFiles: { 'README.md': '# taesd', 'taesd_encoder.onnx': Buffer.from('encoder'), 'vae_encoder/model.onnx': Buffer.from('encoder'), 'diffusion_pytorch_model.safetensors': Buffer.from('weights') },
  });
  const dir = mkdtempSync(join(tmpdir(), 'imagine-taesd-pull-'));
  t.after(async () => {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const config = loadConfig({ env: { HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(dir, 'hub') }, cwd: dir });
  let stdout = '';
  const io = { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: () => true } };
  const result = await runModelsPull('test-org/taesd', { config, io: io as never, previewDecoder: true });
  assert.deepEqual(result.files.map((file) => file.path).sort(), ['taesd_decoder.onnx', 'vae_decoder/model.onnx']);
  assert.ok(stdout.includes(`  use it: IMAGINE_PREVIEW_DECODER=${result.snapshotPath} in .env (model.previewDecoder)`), stdout);

  const decoder = await TaesdDecoder.open(result.snapshotPath, (file) => openSession(file, 'cpu'));
  try {
    assert.equal(decoder.file, join(result.snapshotPath, 'vae_decoder/model.onnx'));
    assert.equal(decoder.signedOutput, true);
  } finally {
    await decoder.release();
  }
});

test('a repo without an ONNX TAESD decoder (PyTorch weights only) is refused before downloading anything', async (t) => {
  const folder = mkdtempSync(join(tmpdir(), 'imagine-taesd-pytorch-'));
  writeFileSync(join(folder, 'config.json'), '{"_class_name":"AutoencoderTiny"}');
  writeFileSync(join(folder, 'diffusion_pytorch_model.safetensors'), 'weights');
  const hub = await startFakeHub({ repo: 'test-org/taesd', folder });
  t.after(async () => {
    await hub.close();
    rmSync(folder, { recursive: true, force: true });
  });
  const pulling = pullModel({ repo: 'test-org/taesd', revision: 'main', cacheDir: join(folder, 'hub'), endpoint: hub.url, kind: 'preview-decoder' });
  await assert.rejects(pulling, (error: unknown) => {
    assert.ok(error instanceof HubError);
    assert.equal(error.code, 'hub_not_onnx');
    assert.equal(error.message, 'test-org/taesd has no ONNX TAESD decoder (none of vae_decoder/model.onnx, taesd_decoder.onnx, model.onnx).');
    return true;
  });
  assert.ok(!hub.requests.some((r) => r.url.includes('/resolve/')));
});
