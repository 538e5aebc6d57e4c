/**
 * The bot reads prompts in A1111's syntax by default (generation.promptSyntax "a1111"): a weighted prompt longer than
 * 75 tokens, end to end through the real bot process and the emulator, checked against `imagine-bot generate` run
 * separately with the same settings.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadClipTokenizer } from '../../src/diffusion/tokenizer.js';
import { runCli } from '../helpers/cli.js';
import { pngWithoutTextChunks } from '../helpers/png-chunks.js';
import { download, pngParameters, Sandbox, TINY_MODEL } from './harness.js';

const FILLER = ['red', 'dog', 'blue', 'cat', 'green', 'tree', 'small', 'house', 'river', 'sky'];
/** Weighted words first, then 80 one-token words: two chunks, no comma near the 75-token boundary. */
const PROMPT = `(lighthouse:1.3) at dusk, [fog] ${Array.from({ length: 80 }, (_, i) => FILLER[i % FILLER.length]).join(' ')}`;
const NEGATIVE = 'blurry';
const SETTINGS = { seed: '77', steps: 4, cfg: 7, size: '64x64', sampler: 'euler' } as const;

describe('prompt syntax through the bot', () => {
  let sb: Sandbox;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'imagine-syntax-e2e-'));
    sb = await Sandbox.start();
  });
  after(async () => {
    await sb?.stop();
    await rm(work, { recursive: true, force: true });
  });

  /** The CLI's PNG for the same request under a syntax. */
  async function cliPng(syntax: 'a1111' | 'plain'): Promise<Buffer> {
    const out = join(work, syntax);
    const result = await runCli([
      'generate', '--model', TINY_MODEL, '--prompt', PROMPT, '--negative', NEGATIVE, '--prompt-syntax', syntax,
      '--seed', SETTINGS.seed, '--steps', String(SETTINGS.steps), '--cfg', String(SETTINGS.cfg), '--width', '64', '--height', '64',
      '--scheduler', SETTINGS.sampler, '--provider', 'cpu', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    return readFile(join(out, '0.png'));
  }

  test('a weighted long prompt: A1111 reading, token count in the embed, prompt as typed in the parameters chunk', async () => {
    const id = sb.imagine(sb.people.bruno, { prompt: PROMPT, negative: NEGATIVE, ...SETTINGS });
    const view = await sb.waitForResult(id, 120_000);
    const reply = view.original!;

    const [parameters] = await pngParameters(reply);
    const [promptLine, negativeLine, settingsLine] = (parameters ?? '').split('\n');
    assert.equal(promptLine, PROMPT, 'the prompt as typed, brackets and all (A1111 writes nothing else for its syntax)');
    assert.equal(negativeLine, `Negative prompt: ${NEGATIVE}`);
    assert.match(settingsLine!, /^Steps: 4, Sampler: Euler, CFG scale: 7, Seed: 77, Size: 64x64, Model: tiny-sd/);

    // The brackets add no tokens: the count is that of the words, over two chunks of 75.
    const tokenizer = await loadClipTokenizer(join(TINY_MODEL, 'tokenizer'));
    const words = PROMPT.replace('(lighthouse:1.3)', 'lighthouse').replace('[fog]', 'fog');
    const expectedCount = tokenizer.tokenize(words).length;
    assert.ok(expectedCount > 75 && expectedCount <= 150, `${expectedCount} tokens`);
    const embed = reply.embeds[0] as { fields: { name: string; value: string }[] };
    assert.equal(embed.fields.find((f) => f.name === 'Prompt tokens')?.value, `${expectedCount}/150 tokens`);

    // Same pixels as the CLI under a1111; not those of plain, which would cut the prompt at 75 tokens.
    const png = await download(reply.attachments.find((a) => a.content_type === 'image/png')!.url);
    const a1111 = await cliPng('a1111');
    assert.ok(pngWithoutTextChunks(png).equals(pngWithoutTextChunks(a1111)), 'the bot read the prompt as A1111 does');
    const plain = await cliPng('plain');
    assert.ok(!pngWithoutTextChunks(png).equals(pngWithoutTextChunks(plain)), 'and not as plain text');
  });
});

describe('clip skip through the bot (generation.clipSkip 2)', () => {
  let sb: Sandbox;
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'imagine-clip-skip-e2e-'));
    sb = await Sandbox.start({ config: { generation: { clipSkip: 2 } } });
  });
  after(async () => {
    await sb?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('the job runs with clip skip 2, as generate --clip-skip 2 does, and the parameters chunk says so', async () => {
    const prompt = '(red house:1.2) by a river';
    const id = sb.imagine(sb.people.bruno, { prompt, ...SETTINGS });
    const reply = (await sb.waitForResult(id, 120_000)).original!;
    const [parameters] = await pngParameters(reply);
    assert.match(parameters ?? '', /^Steps: 4, Sampler: Euler, CFG scale: 7, Seed: 77, Size: 64x64, Model: tiny-sd, Clip skip: 2$/m);

    const out = join(work, 'cli');
    const result = await runCli([
      'generate', '--model', TINY_MODEL, '--prompt', prompt, '--prompt-syntax', 'a1111', '--clip-skip', '2', '--seed', SETTINGS.seed,
      '--steps', String(SETTINGS.steps), '--cfg', String(SETTINGS.cfg), '--width', '64', '--height', '64', '--scheduler', SETTINGS.sampler,
      '--provider', 'cpu', '--out', out,
    ]);
    assert.equal(result.code, 0, result.stderr);
    const png = await download(reply.attachments.find((a) => a.content_type === 'image/png')!.url);
    assert.ok(pngWithoutTextChunks(png).equals(pngWithoutTextChunks(await readFile(join(out, '0.png')))), 'same pixels as the CLI');
  });
});
