import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { BotSupervisor, startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { controlJson } from './helpers.js';

const echoBot = fileURLToPath(new URL('./fixtures/echo-bot.ts', import.meta.url));
const botCommand = { command: process.execPath, args: ['--import', 'tsx', echoBot] };

describe('BotSupervisor: a bot child process against the emulator', () => {
  let emulator: DiscordEmulator;
  let supervisor: BotSupervisor;

  before(async () => {
    emulator = await startDiscordEmulator();
    supervisor = new BotSupervisor({ ...botCommand, env: { ...emulator.botEnv(), IMAGINE_MODEL: '/models/x', IMAGINE_DATA_DIR: '/data/x' }, emulator, readyTimeoutMs: 60_000, stopTimeoutMs: 5_000 });
    emulator.attachBot(supervisor);
  });
  after(async () => {
    await supervisor?.stop({ hard: true });
    await emulator?.stop();
  });

  it('start() resolves once the child has IDENTIFYed and received READY and its GUILD_CREATEs', async () => {
    await supervisor.start();
    assert.equal(supervisor.ready, true);
    assert.equal(emulator.gateway.liveSessions().length, 1);
    const envLine = supervisor.output.find((line) => line.includes('echoBotEnv'));
    assert.ok(envLine, supervisor.output.join('\n'));
    const { echoBotEnv } = JSON.parse(envLine) as { echoBotEnv: Record<string, string> };
    assert.deepEqual(echoBotEnv, { IMAGINE_MODEL: '/models/x', IMAGINE_DATA_DIR: '/data/x', DISCORD_API_BASE: emulator.apiBase, DISCORD_APP_ID: emulator.applicationId });
  });

  it('POST /_sandbox/bot/restart (soft: SIGTERM) resolves when the new process is ready', async () => {
    const firstPid = supervisor.pid;
    const { status, data } = await controlJson<{ ready: boolean; pid: number }>(emulator, 'POST', '/bot/restart', { hard: false });
    assert.equal(status, 200, JSON.stringify(data));
    assert.equal(data.ready, true);
    assert.notEqual(data.pid, firstPid);
    assert.ok(supervisor.output.includes('echo-bot stopping'), 'the soft stop let the bot shut down by itself');
    assert.equal((supervisor.status().last_exit as { code: number }).code, 0);
  });

  it('hard restart kills with SIGKILL and the bot comes back', async () => {
    const { status, data } = await controlJson<{ ready: boolean; last_exit: { signal: string } }>(emulator, 'POST', '/bot/restart', { hard: true });
    assert.equal(status, 200, JSON.stringify(data));
    assert.equal(data.last_exit.signal, 'SIGKILL');
    assert.equal(supervisor.ready, true);
  });

  it('start() rejects with the output when the child exits before it is ready', async () => {
    const failing = new BotSupervisor({ command: process.execPath, args: ['-e', 'console.log("no token, giving up"); process.exit(3)'], emulator });
    await assert.rejects(failing.start(), /exited before it was ready \(code 3[\s\S]*no token, giving up/);
    assert.equal(failing.running, false);
  });

  it('without an attached bot, /bot/restart answers 409', async () => {
    const lonely = await startDiscordEmulator();
    try {
      const { status } = await controlJson(lonely, 'POST', '/bot/restart', { hard: false });
      assert.equal(status, 409);
    } finally {
      await lonely.stop();
    }
  });
});
