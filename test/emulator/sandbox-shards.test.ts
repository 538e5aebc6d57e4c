/**
 * `imagine-bot sandbox --shards 2`: the real bot, with two gateway shards, in a world with guilds on both; /imagine in
 * the guild of each shard completes, /imagine-status lists the shards, and the page (headless Chromium, when
 * installed) says which shard serves the selected guild.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { SandboxClient, type SandboxInteraction } from '../../src/emulator/index.js';
import { findExecutable } from '../helpers/needs.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = findExecutable('chromium');

const dataDir = mkdtempSync(join(tmpdir(), 'imagine-sandbox-shards-'));
const child = spawn(
  process.execPath,
  ['--import', 'tsx', join(root, 'src', 'cli', 'sandbox.ts'), 'sandbox', '--port', '0', '--shards', '2', '--data', dataDir, '--model', 'test/fixtures/tiny-sd'],
  { cwd: root, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'] },
);
let output = '';
child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

after(async () => {
  if (child.exitCode === null) {
    child.kill('SIGINT');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  rmSync(dataDir, { recursive: true, force: true });
});

async function sandboxUrl(): Promise<string> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the sandbox exited with ${String(child.exitCode)}:\n${output}`);
    const url = /Open (http:\/\/127\.0\.0\.1:\d+)\/ to try it/.exec(output)?.[1];
    if (url) return url;
    if (Date.now() > deadline) throw new Error(`the sandbox never got ready:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const hasPng = (i: SandboxInteraction) => (i.original?.attachments ?? []).some((a) => a.content_type === 'image/png');

test('sandbox --shards 2: guilds on both shards, both connected; /imagine works on each; /imagine-status and the page show the shards', { timeout: 300_000 }, async () => {
  const url = await sandboxUrl();
  assert.match(output, /Shards: 2, with guilds on every shard/);
  const sandbox = new SandboxClient(url);
  const state = await sandbox.state();
  assert.deepEqual(state.shards.map((s) => [s.id, s.connected]), [[0, true], [1, true]]);
  const user = state.users.find((u) => !u.admin)!;
  for (const shard of state.shards) {
    assert.ok(shard.guild_ids.length > 0, `shard ${shard.id} serves a guild`);
    const guild = state.guilds.find((g) => g.id === shard.guild_ids[0])!;
    const channel = guild.channels.find((c) => !c.nsfw)!;
    const { interaction_id, delivered } = await sandbox.invoke({ user_id: user.id, guild_id: guild.id, channel_id: channel.id, name: 'imagine', options: { prompt: `a lighthouse on shard ${shard.id}`, steps: 2 } });
    assert.ok(delivered);
    await sandbox.waitForInteraction(interaction_id, hasPng, { timeoutMs: 120_000 });
  }
  const guild = state.guilds.find((g) => g.id === state.shards[1]!.guild_ids[0])!;
  const channel = guild.channels.find((c) => !c.nsfw)!;
  const status = await sandbox.invoke({ user_id: user.id, guild_id: guild.id, channel_id: channel.id, name: 'imagine-status' });
  const answered = await sandbox.waitForInteraction(status.interaction_id, (i) => Boolean(i.original?.content), { timeoutMs: 20_000 });
  assert.match(answered.original!.content, /Shards: 2 of 2 live/);
  assert.match(answered.original!.content, /• shard 1 · \d+ server\(s\) · ping (\d+ ms|—) · connected/);

  if (!CHROMIUM) return; // the page check needs a real browser
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/`);
    await page.waitForSelector('body[data-ready="true"]');
    for (const shard of state.shards) {
      const shown = state.guilds.find((g) => g.id === shard.guild_ids[0])!;
      await page.selectOption('[data-testid="channel"]', `${shown.id}:${shown.channels[0]!.id}`);
      const expected = `served by shard ${shard.id} of 2 — connected`;
      await page.waitForFunction(`document.querySelector('[data-testid="shard"]')?.textContent === ${JSON.stringify(expected)}`, undefined, { timeout: 10_000 });
    }
  } finally {
    await browser.close();
  }
});
