/**
 * Issue 14's prompt features together through the bot: one /imagine with a weighted long prompt (two 75-token chunks)
 * naming a textual-inversion embedding and a LoRA tag, and an embedding in the negative prompt. The LoRA's merged text
 * encoder must still hold the embeddings' rows (both are load-time rewrites of the same graph), the image must be the
 * one `imagine-bot generate` makes with the same folders, and the parameters chunk must carry the prompt as typed
 * (tag included) with A1111's `Lora hashes` and `TI hashes` (hashes from the fixture scripts, not from our code).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { FIXTURES, REFERENCE } from '../helpers/reference.js';
import { download, pngParameters, Sandbox, TINY_MODEL } from './harness.js';

const EMBEDDINGS = join(FIXTURES, 'embeddings');
const LORAS = join(FIXTURES, 'loras');
const tiHashes = (JSON.parse(readFileSync(join(REFERENCE, 'textual-inversion.json'), 'utf8')) as { embeddings: Record<string, { sha256: string }> }).embeddings;
const loraHashes = (JSON.parse(readFileSync(join(LORAS, 'expected.json'), 'utf8')) as { hashes: Record<string, string> }).hashes;
const FILLER = ['red', 'dog', 'blue', 'cat', 'green', 'tree', 'small', 'house', 'river', 'sky'];
const PROMPT = `(lighthouse:1.3) at dusk, (moody:1.1), [fog] ${Array.from({ length: 80 }, (_, i) => FILLER[i % FILLER.length]).join(' ')} <lora:tiny-kohya:0.8>`;
const NEGATIVE = 'inky, blurry';
const SETTINGS = { seed: '79', steps: 4, cfg: 7, size: '64x64', sampler: 'euler' } as const;

describe('weighted long prompt + embeddings + LoRA through the bot', () => {
  let sb: Sandbox;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'imagine-networks-e2e-'));
    sb = await Sandbox.start({ config: { model: { embeddingsDir: EMBEDDINGS, loraDir: LORAS } } });
  });
  after(async () => {
    await sb?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('the CLI\'s pixels, the prompt as typed, Lora hashes and TI hashes in the parameters chunk', async () => {
    const reply = (await sb.waitForResult(sb.imagine(sb.people.bruno, { prompt: PROMPT, negative: NEGATIVE, ...SETTINGS }), 120_000)).original!;
    const [parameters] = await pngParameters(reply);
    const [promptLine, negativeLine, settingsLine] = (parameters ?? '').split('\n');
    assert.equal(promptLine, PROMPT);
    assert.equal(negativeLine, `Negative prompt: ${NEGATIVE}`);
    assert.ok(settingsLine!.includes(`Lora hashes: "tiny-kohya: ${loraHashes['tiny-kohya']}"`), settingsLine);
    assert.ok(settingsLine!.includes(`TI hashes: "moody: ${tiHashes['moody']!.sha256.slice(0, 12)}, inky: ${tiHashes['inky']!.sha256.slice(0, 12)}"`), settingsLine);

    // The tag is not a token: "lighthouse at dusk," 4, moody 3 vectors, "," 1, "fog" 1, 80 words = 89 of 150.
    const embed = reply.embeds[0] as { fields: { name: string; value: string }[] };
    assert.equal(embed.fields.find((f) => f.name === 'Prompt tokens')?.value, '89/150 tokens');

    const out = join(work, 'cli');
    const result = await runCli([
      'generate', '--model', TINY_MODEL, '--embeddings', EMBEDDINGS, '--lora-dir', LORAS, '--prompt', PROMPT, '--negative', NEGATIVE,
      '--prompt-syntax', 'a1111', '--seed', SETTINGS.seed, '--steps', String(SETTINGS.steps), '--cfg', String(SETTINGS.cfg),
      '--width', '64', '--height', '64', '--scheduler', SETTINGS.sampler, '--provider', 'cpu', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const png = await download(reply.attachments.find((a) => a.content_type === 'image/png')!.url);
    const cli = await readFile(join(out, '0.png'));
    assert.ok(pngWithoutTextChunks(png).equals(pngWithoutTextChunks(cli)), 'the bot used the embeddings and the LoRA as generate does');

    // Without the LoRA the same prompt makes another image: the tag was applied, not just written down.
    const plainOut = join(work, 'no-lora');
    const withoutLora = await runCli([
      'generate', '--model', TINY_MODEL, '--embeddings', EMBEDDINGS, '--prompt', PROMPT.replace(' <lora:tiny-kohya:0.8>', ''), '--negative', NEGATIVE,
      '--prompt-syntax', 'a1111', '--seed', SETTINGS.seed, '--steps', String(SETTINGS.steps), '--cfg', String(SETTINGS.cfg),
      '--width', '64', '--height', '64', '--scheduler', SETTINGS.sampler, '--provider', 'cpu', '--out', plainOut,
    ]);
    assert.equal(withoutLora.code, 0, withoutLora.stderr);
    assert.ok(!pngWithoutTextChunks(await readFile(join(plainOut, '0.png'))).equals(pngWithoutTextChunks(cli)), 'the LoRA changed the image');
  });
});
