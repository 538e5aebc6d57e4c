/** `imagine-bot models embeddings`: what the bot would load from an embeddings folder, and what it skips and why. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { FIXTURES, REFERENCE, TINY_MODEL } from '../helpers/reference.js';

test('lists the embeddings with vector counts and TI hashes; marks the file for another model and the unreadable ones', async () => {
  const result = await runCli(['models', 'embeddings', '--dir', join(FIXTURES, 'embeddings-broken')], { env: { IMAGINE_MODEL: TINY_MODEL } });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^Textual-inversion embeddings in .*embeddings-broken \(the model's text encoder takes width 32\):$/m);
  assert.match(result.stdout, /^ {2}fine {2}1 vector\(s\) × 32 {2}TI hash [0-9a-f]{12} {2}fine\.safetensors$/m);
  assert.match(result.stdout, /^ {2}wide {2}1 vector\(s\) × 768 .*\(skipped: made for another model\)$/m);
  assert.match(result.stdout, /^ {2}evil\.pt {2}skipped: .*os\.system.*refused/m);
  assert.match(result.stdout, /^ {2}garbage\.safetensors {2}skipped: /m);
});

test('the hashes are the first 12 hex digits of the files\' sha256', async () => {
  const { embeddings } = JSON.parse(readFileSync(join(REFERENCE, 'textual-inversion.json'), 'utf8')) as { embeddings: Record<string, { sha256: string }> };
  const result = await runCli(['models', 'embeddings', '--dir', join(FIXTURES, 'embeddings')], { env: { IMAGINE_MODEL: TINY_MODEL } });
  assert.equal(result.code, 0, result.stderr);
  for (const [name, { sha256 }] of Object.entries(embeddings)) {
    assert.match(result.stdout, new RegExp(`^ {2}${name} {2}\\d vector\\(s\\) × 32 {2}TI hash ${sha256.slice(0, 12)} `, 'm'));
  }
});
