/**
 * `imagine-bot start` and `imagine-bot deploy-commands` as a person runs them: real processes, the emulator as
 * Discord for deploy-commands.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { REPO_ROOT, TINY_MODEL } from './harness.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in an empty working folder (no .env, no config/local.json) with only the given variables. */
function cli(args: string[], env: Record<string, string>, cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    // tsx resolved from this checkout: the working folder is elsewhere on purpose.
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(REPO_ROOT, 'src', 'cli', 'main.ts'), ...args], {
      cwd,
      env: { PATH: process.env['PATH'] ?? '', HOME: cwd, NODE_OPTIONS: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('imagine-bot start / deploy-commands', () => {
  let emulator: DiscordEmulator;
  let cwd: string;

  before(async () => {
    emulator = await startDiscordEmulator();
    cwd = mkdtempSync(join(tmpdir(), 'imagine-cli-'));
  });
  after(async () => {
    await emulator.stop();
    rmSync(cwd, { recursive: true, force: true });
  });

  test('start without a token prints the first-run guide, not a stack trace', async () => {
    const run = await cli(['start'], { IMAGINE_DATA_DIR: join(cwd, 'data') }, cwd);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /needs a Discord bot token/);
    assert.match(run.stdout, /deploy-commands/);
    assert.doesNotMatch(run.stdout + run.stderr, /\n\s+at /);
  });

  test('start with a token but no model explains how to get one', async () => {
    const run = await cli(['start'], { ...emulator.botEnv(), IMAGINE_DATA_DIR: join(cwd, 'data') }, cwd);
    assert.equal(run.code, 1);
    assert.match(run.stdout, /No model configured/);
    assert.match(run.stdout, /models pull/);
    assert.ok(!(run.stdout + run.stderr).includes(emulator.token), 'the token is not echoed');
  });

  test('start with a damaged store names the file and the way out, before the model loads', async () => {
    const data = join(cwd, 'damaged-data');
    mkdirSync(data, { recursive: true });
    const file = join(data, 'imagine.sqlite');
    writeFileSync(file, 'not a database, whatever it once was\n'.repeat(100));
    const run = await cli(['start'], { ...emulator.botEnv(), IMAGINE_DATA_DIR: data, IMAGINE_MODEL: TINY_MODEL }, cwd);
    assert.equal(run.code, 1);
    assert.equal(
      run.stderr.trim(),
      `error: the job store ${file} is damaged (SQLITE_NOTADB). Stop the bot, then either restore the file from a backup, or move it aside to start with an empty store (queued jobs, guild settings and rate-limit usage are then lost): mv ${file} ${file}.corrupt`,
    );
    assert.doesNotMatch(run.stdout, /model tiny-sd loaded/, 'the store is checked before the model is loaded');
  });

  test('deploy-commands registers the five commands in a guild; --print shows them as JSON', async () => {
    const guildId = (emulator.stateView() as unknown as { guilds: { id: string }[] }).guilds[0]!.id;
    const run = await cli(['deploy-commands', '--guild', guildId], emulator.botEnv(), cwd);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /Registered \/imagine, \/imagine-queue, \/imagine-settings, \/imagine-status, \/imagine-info in guild \d+/);
    const stored = await (await fetch(`${emulator.url}/_sandbox/commands`)).json() as Array<{ name: string; guild_id?: string }>;
    assert.deepEqual(stored.filter((c) => c.guild_id === guildId).map((c) => c.name).sort(), ['imagine', 'imagine-info', 'imagine-queue', 'imagine-settings', 'imagine-status']);

    const printed = await cli(['deploy-commands', '--print'], {}, cwd);
    assert.equal(printed.code, 0, printed.stderr);
    const definitions = JSON.parse(printed.stdout) as Array<{ name: string }>;
    assert.deepEqual(definitions.map((d) => d.name), ['imagine', 'imagine-queue', 'imagine-settings', 'imagine-status', 'imagine-info']);
  });

  test('deploy-commands without credentials says what to set', async () => {
    const run = await cli(['deploy-commands'], {}, cwd);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /DISCORD_TOKEN and DISCORD_APP_ID must be set/);
  });
});
