/**
 * LoRAs through the bot (model.loraDir = test/fixtures/loras): a `<lora:…>` tag in /imagine's prompt is merged into
 * the model in the engine process, the image is the one `imagine-bot generate --lora-dir` makes, and the parameters
 * chunk keeps the tag in the prompt and carries A1111's `Lora hashes` (hash from scripts/make-lora-fixtures.py).
 * An unknown name is refused privately with the list of the LoRAs there are; /imagine-loras lists them (it is
 * registered because model.loraDir is set; without it the bot registers the four commands it always had).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { download, pngParameters, Sandbox, TINY_MODEL } from './harness.js';

const LORAS = join(TINY_MODEL, '..', 'loras');
const hashes = (JSON.parse(readFileSync(join(LORAS, 'expected.json'), 'utf8')) as { hashes: Record<string, string> }).hashes;
const SETTINGS = { seed: '77', steps: 4, cfg: 7, size: '64x64', sampler: 'euler' } as const;

describe('LoRA through the bot', () => {
  let sb: Sandbox;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'imagine-lora-e2e-'));
    sb = await Sandbox.start({ config: { model: { loraDir: LORAS } } });
  });
  after(async () => {
    await sb?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('<lora:tiny-kohya:0.8>: the CLI\'s image, the tag in the prompt line and Lora hashes in the parameters chunk', async () => {
    const prompt = 'a red house by a river <lora:tiny-kohya:0.8>';
    const id = sb.imagine(sb.people.bruno, { prompt, ...SETTINGS });
    const reply = (await sb.waitForResult(id, 120_000)).original!;
    const [parameters] = await pngParameters(reply);
    const [promptLine, settingsLine] = (parameters ?? '').split('\n');
    assert.equal(promptLine, prompt, 'the prompt as typed, tag included (as A1111 writes it)');
    assert.ok(settingsLine!.includes(`Lora hashes: "tiny-kohya: ${hashes['tiny-kohya']}"`), settingsLine);

    const out = join(work, 'cli');
    const result = await runCli([
      'generate', '--model', TINY_MODEL, '--prompt', prompt, '--prompt-syntax', 'a1111', '--lora-dir', LORAS, '--seed', SETTINGS.seed,
      '--steps', String(SETTINGS.steps), '--cfg', String(SETTINGS.cfg), '--width', '64', '--height', '64', '--scheduler', SETTINGS.sampler,
      '--provider', 'cpu', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const png = await download(reply.attachments.find((a) => a.content_type === 'image/png')!.url);
    assert.ok(pngWithoutTextChunks(png).equals(pngWithoutTextChunks(await readFile(join(out, '0.png')))), 'same pixels as the CLI');
  });

  test('/imagine-loras lists the LoRA files with size and A1111 short hash, privately', async () => {
    const answer = await sb.ephemeralAnswer(sb.invoke({ user_id: sb.people.bruno, name: 'imagine-loras' }));
    assert.match(answer, /^🧩 2 LoRAs — write `<lora:name:0\.8>` in a prompt:$/m);
    assert.match(answer, new RegExp(`^\`tiny-kohya\` · 0\\.0 MB · ${hashes['tiny-kohya']}$`, 'm'));
    assert.match(answer, new RegExp(`^\`tiny-peft\` · 0\\.0 MB · ${hashes['tiny-peft']}$`, 'm'));
  });

  test('an unknown LoRA is refused privately before it is queued, with the list of available LoRAs', async () => {
    const before = sb.jobStarts().length;
    const answer = await sb.ephemeralAnswer(sb.imagine(sb.people.bruno, { prompt: 'a cat <lora:nope:1>', ...SETTINGS }));
    assert.equal(answer, 'Unknown LoRA "nope" in <lora:nope>: available: tiny-kohya, tiny-peft.');
    const badWeight = await sb.ephemeralAnswer(sb.imagine(sb.people.bruno, { prompt: 'a cat <lora:tiny-kohya:lots>', ...SETTINGS }));
    assert.match(badWeight, /"lots" is not a number/);
    assert.equal(sb.jobStarts().length, before, 'no job ran');
  });
});
