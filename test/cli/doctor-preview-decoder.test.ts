/** `imagine-bot doctor` and model.previewDecoder: the TAESD decoder it names is found, or a warning says what to do. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runDoctor } from '../../src/cli/doctor.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const TAESD = join(ROOT, 'test', 'fixtures', 'taesd');

for (const [label, decoder, status, detail] of [
  ['none configured: no check', '', null, null],
  ['a decoder file', join(TAESD, 'taesd_decoder.onnx'), 'ok', `TAESD previews from ${join(TAESD, 'taesd_decoder.onnx')}`],
  ['a folder in the AutoencoderTiny layout', TAESD, 'ok', `TAESD previews from ${join(TAESD, 'vae_decoder/model.onnx')}`],
  ['a missing path: a warning, previews fall back', join(TAESD, 'nope'), 'warn', `${join(TAESD, 'nope')}: preview decoder (model.previewDecoder) does not exist: previews will use the colour map`],
] as const) {
  test(`doctor, preview decoder: ${label}`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'imagine-doctor-taesd-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const checks = await runDoctor({ env: { IMAGINE_PREVIEW_DECODER: decoder, IMAGINE_DATA_DIR: join(dir, 'data') }, cwd: dir, quick: true });
    const check = checks.find((c) => c.name === 'Preview decoder');
    if (status === null) return assert.equal(check, undefined);
    assert.equal(check?.status, status);
    assert.equal(check?.detail, detail);
  });
}
