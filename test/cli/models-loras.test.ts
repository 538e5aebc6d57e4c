/**
 * `imagine-bot models list` shows the LoRAs of model.loraDir with size and A1111's short hash (the hashes computed by
 * scripts/make-lora-fixtures.py), and nothing about LoRAs when no folder is configured.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runLoraList } from '../../src/cli/models.js';
import { loadConfig } from '../../src/config/index.js';
import { TINY_MODEL } from '../helpers/reference.js';

const LORAS = join(TINY_MODEL, '..', 'loras');
const hashes = (JSON.parse(readFileSync(join(LORAS, 'expected.json'), 'utf8')) as { hashes: Record<string, string> }).hashes;

async function listed(env: Record<string, string>): Promise<string> {
  let out = '';
  const io = { stdout: { write: (text: string) => ((out += text), true) }, stderr: { write: () => true } };
  await runLoraList({ config: loadConfig({ env, cwd: '/nonexistent-folder-for-defaults' }), io: io as never });
  return out;
}

test('models list: the LoRA folder, each file with size and short hash', async () => {
  const out = await listed({ IMAGINE_LORA_DIR: LORAS });
  assert.match(out, new RegExp(`^LoRAs in ${LORAS.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(model\\.loraDir\\)`, 'm'));
  assert.match(out, new RegExp(`^  tiny-kohya  18\\.4 kB  ${hashes['tiny-kohya']}$`, 'm'));
  assert.match(out, new RegExp(`^  tiny-peft  4\\.48 kB  ${hashes['tiny-peft']}$`, 'm'));
  assert.equal(await listed({}), '', 'no LoRA folder, no LoRA section');
});
