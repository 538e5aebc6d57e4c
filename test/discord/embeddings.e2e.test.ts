/**
 * Textual-inversion embeddings through the bot (model.embeddingsDir): a weighted long prompt naming an embedding, and
 * an embedding in the negative prompt, end to end through the real bot process and the emulator — the same pixels as
 * `imagine-bot generate --embeddings` with the same settings, the vectors in the token count, and A1111's `TI hashes`
 * in the parameters chunk (hashes from hashlib, test/fixtures/reference/textual-inversion.json).
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
const hashes = Object.fromEntries(
  Object.entries((JSON.parse(readFileSync(join(REFERENCE, 'textual-inversion.json'), 'utf8')) as { embeddings: Record<string, { sha256: string }> }).embeddings).map(
    ([name, { sha256 }]) => [name, sha256.slice(0, 12)],
  ),
);
const FILLER = ['red', 'dog', 'blue', 'cat', 'green', 'tree', 'small', 'house', 'river', 'sky'];
/** A weighted embedding, then 80 one-token words: two chunks. */
const PROMPT = `(lighthouse:1.3) at dusk, (moody:1.1), [fog] ${Array.from({ length: 80 }, (_, i) => FILLER[i % FILLER.length]).join(' ')}`;
const NEGATIVE = 'inky, blurry';
const SETTINGS = { seed: '78', steps: 4, cfg: 7, size: '64x64', sampler: 'euler' } as const;

describe('textual-inversion embeddings through the bot', () => {
  let sb: Sandbox;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'imagine-embeddings-e2e-'));
    sb = await Sandbox.start({ config: { model: { embeddingsDir: EMBEDDINGS } } });
  });
  after(async () => {
    await sb?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('embedding in a weighted long prompt and in the negative: CLI pixels, token count, TI hashes', async () => {
    const view = await sb.waitForResult(sb.imagine(sb.people.bruno, { prompt: PROMPT, negative: NEGATIVE, ...SETTINGS }), 120_000);
    const reply = view.original!;
    const [parameters] = await pngParameters(reply);
    const lines = (parameters ?? '').split('\n');
    assert.equal(lines[0], PROMPT);
    assert.equal(lines[1], `Negative prompt: ${NEGATIVE}`);
    assert.match(lines[2]!, new RegExp(`^Steps: 4, Sampler: Euler, CFG scale: 7, Seed: 78, Size: 64x64, Model: tiny-sd, TI hashes: "moody: ${hashes['moody']}, inky: ${hashes['inky']}"$`));

    // "lighthouse at dusk," is 4 tokens, moody 3 vectors, "," 1, "fog" 1, then 80 words: 89 over two chunks of 75.
    const embed = reply.embeds[0] as { fields: { name: string; value: string }[] };
    assert.equal(embed.fields.find((f) => f.name === 'Prompt tokens')?.value, '89/150 tokens');

    const out = join(work, 'cli');
    const result = await runCli([
      'generate', '--model', TINY_MODEL, '--embeddings', EMBEDDINGS, '--prompt', PROMPT, '--negative', NEGATIVE, '--prompt-syntax', 'a1111',
      '--seed', SETTINGS.seed, '--steps', String(SETTINGS.steps), '--cfg', String(SETTINGS.cfg), '--width', '64', '--height', '64',
      '--scheduler', SETTINGS.sampler, '--provider', 'cpu', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const png = await download(reply.attachments.find((a) => a.content_type === 'image/png')!.url);
    const cli = await readFile(join(out, '0.png'));
    assert.ok(pngWithoutTextChunks(png).equals(pngWithoutTextChunks(cli)), 'the bot used the embeddings as generate does');
    assert.equal((cli.toString('latin1').match(/TI hashes: "[^"]*"/) ?? [])[0], `TI hashes: "moody: ${hashes['moody']}, inky: ${hashes['inky']}"`);
  });
});

describe('a folder with broken embedding files', () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start({ config: { model: { embeddingsDir: join(FIXTURES, 'embeddings-broken') } } });
  });
  after(async () => {
    await sb?.stop();
  });

  test('the bot starts, logs a warning per file it skips, and uses the good one', async () => {
    for (const file of ['evil.pt', 'garbage.safetensors', 'wide.safetensors']) {
      const line = await sb.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes(`embedding ${file} skipped`));
      assert.equal(line.level, 40, `${file}: a warning`);
    }
    const view = await sb.waitForResult(sb.imagine(sb.people.bruno, { prompt: 'a fine house', ...SETTINGS }), 120_000);
    const [parameters] = await pngParameters(view.original!);
    assert.match(parameters ?? '', /, TI hashes: "fine: [0-9a-f]{12}"$/m);
  });
});
