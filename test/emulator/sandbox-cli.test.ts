import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SandboxClient } from '../../src/emulator/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const sandboxEntry = join(root, 'src', 'cli', 'sandbox.ts');
const echoBot = join(root, 'test', 'emulator', 'fixtures', 'echo-bot.ts');

interface RunningCli {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

/** Spawns `imagine-bot sandbox` from the sources and waits for its "Open … to try it" line. */
async function startSandboxCli(args: string[], env: Record<string, string> = {}): Promise<RunningCli> {
  const child = spawn(process.execPath, ['--import', 'tsx', sandboxEntry, 'sandbox', '--port', '0', ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the sandbox did not become ready:\n${output}`)), 90_000);
    const check = () => {
      const match = /Open (http:\/\/127\.0\.0\.1:\d+)\/ to try it/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the sandbox exited with ${String(code)}:\n${output}`));
    });
  });
  return { child, url, output: () => output, exited };
}

async function stopWithCtrlC(cli: RunningCli): Promise<number | null> {
  cli.child.kill('SIGINT');
  return cli.exited;
}

describe('imagine-bot sandbox', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'imagine-sandbox-test-'));
  const started: RunningCli[] = [];
  after(() => {
    for (const cli of started) cli.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves the control API and the page, runs the bot with the sandbox environment, and stops both on Ctrl-C', async () => {
    const cli = await startSandboxCli(['--data', dataDir, '--model', 'test/fixtures/tiny-sd', '--bot-command', JSON.stringify([process.execPath, '--import', 'tsx', echoBot])]);
    started.push(cli);
    const sandbox = new SandboxClient(cli.url);
    const state = await sandbox.state();
    assert.equal(state.guilds.length, 2);
    assert.equal(state.bot_connected, true);
    for (const guild of state.guilds) {
      assert.deepEqual(guild.channels.map((c) => c.nsfw).sort(), [false, true]);
      assert.equal(guild.members.filter((m) => m.admin).length, 1);
      assert.equal(guild.members.filter((m) => !m.admin).length, 2);
    }
    assert.deepEqual((await sandbox.commands()).map((c) => c.name), ['echo']);

    const page = await fetch(`${cli.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await page.text(), /<script src="\/app\.js"/);
    const script = await fetch(`${cli.url}/app.js`);
    assert.equal(script.status, 200);

    // The bot got the sandbox's environment.
    const envLine = /\{"echoBotEnv":.*\}/.exec(cli.output())?.[0];
    assert.ok(envLine, cli.output());
    const { echoBotEnv } = JSON.parse(envLine) as { echoBotEnv: Record<string, string> };
    assert.equal(echoBotEnv.IMAGINE_MODEL, join(root, 'test', 'fixtures', 'tiny-sd'));
    assert.equal(echoBotEnv.IMAGINE_DATA_DIR, dataDir);
    assert.equal(echoBotEnv.DISCORD_API_BASE, `${cli.url}/api`);
    assert.equal(echoBotEnv.DISCORD_APP_ID, state.application_id);

    // A command round trip over the control API.
    const guild = state.guilds[0]!;
    const channel = guild.channels.find((c) => !c.nsfw)!;
    const user = state.users.find((u) => !u.admin)!;
    const { interaction_id } = await sandbox.invoke({ user_id: user.id, guild_id: guild.id, channel_id: channel.id, name: 'echo', options: { text: 'hello', steps: 1 } });
    const done = await sandbox.waitForInteraction(interaction_id, (i) => i.original?.content === 'echo: hello', { timeoutMs: 20_000 });
    const image = done.original!.attachments[0]!;
    assert.equal(image.filename, 'echo.png');
    const bytes = Buffer.from(await (await fetch(image.url)).arrayBuffer());
    assert.equal(bytes.length, image.size);

    // Restart through the control API, then Ctrl-C stops everything.
    const restarted = await sandbox.restartBot(false);
    assert.equal(restarted.ready, true);
    const code = await stopWithCtrlC(cli);
    assert.equal(code, 0, cli.output());
    assert.match(cli.output(), /echo-bot stopping/);
    assert.match(cli.output(), /tiny test model: its images are noise/);
  });

  it('runs the deploy command when the bot registers none itself', async () => {
    const cli = await startSandboxCli(
      ['--data', dataDir, '--bot-command', JSON.stringify([process.execPath, '--import', 'tsx', echoBot]), '--deploy-command', JSON.stringify([process.execPath, '--import', 'tsx', echoBot, 'deploy'])],
      { ECHO_BOT_NO_REGISTER: '1' },
    );
    started.push(cli);
    assert.match(cli.output(), /registered no commands; running deploy-commands/);
    assert.match(cli.output(), /echo-bot deployed/);
    assert.deepEqual((await new SandboxClient(cli.url).commands()).map((c) => c.name), ['echo']);
    assert.equal(await stopWithCtrlC(cli), 0);
  });

  it('starts the real bot (`imagine-bot start`, production code path) on the tiny model by default', async () => {
    const cli = await startSandboxCli(['--data', dataDir, '--model', 'test/fixtures/tiny-sd']);
    started.push(cli);
    const sandbox = new SandboxClient(cli.url);
    assert.equal((await sandbox.state()).bot_connected, true);
    const names = (await sandbox.commands()).map((c) => String(c.name));
    assert.ok(names.includes('imagine'), `registered: ${names.join(', ')}\n${cli.output()}`);
    assert.equal((await fetch(`${cli.url}/`)).status, 200);
    assert.equal(await stopWithCtrlC(cli), 0, cli.output());
  });
});
