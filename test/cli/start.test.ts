// `imagine-bot start` asks Discord about the token before it loads the model: no route to Discord and a refused token
// are one-line errors, reported before any model file is opened.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDiscordEmulator, type DiscordEmulator } from '../../src/emulator/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';

const APP_ID = '1234567890123456789';
/** Shaped like a real bot token (base64url(bot id) . timestamp . hmac), so only Discord can tell it is wrong. */
const WELL_FORMED_TOKEN = `${Buffer.from(APP_ID).toString('base64url')}.GaBcDe.${'x1Y2z3'.repeat(6)}`;

let work: string;
/** An existing folder without a model: loading it would fail naming model_index.json, so reaching the load shows. */
let notAModel: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'imagine-start-'));
  notAModel = join(work, 'not-a-model');
  await mkdir(notAModel);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function start(env: Record<string, string>): Promise<CliResult> {
  return runCli(['start', '--no-deploy'], {
    cwd: work,
    env: { DISCORD_APP_ID: APP_ID, IMAGINE_MODEL: notAModel, IMAGINE_DATA_DIR: join(work, 'data'), KEYV_URL: '', DISCORD_DEV_GUILD_ID: '', ...env },
    timeoutMs: 60_000,
  });
}

/** Exit status 1, one `error:` line on stderr matching `pattern`, no model file named anywhere, the token never shown. */
function assertRefusedBeforeTheModel(result: CliResult, pattern: RegExp, token: string): void {
  assert.equal(result.code, 1, `${result.stdout}${result.stderr}`);
  const errorLines = result.stderr.split('\n').filter((line) => line.startsWith('error:'));
  assert.equal(errorLines.length, 1, result.stderr);
  assert.match(errorLines[0]!, pattern);
  assert.doesNotMatch(`${result.stdout}${result.stderr}`, /model_index\.json|\.onnx|loaded|warmed up/);
  assert.ok(!`${result.stdout}${result.stderr}`.includes(token), 'the token is never printed');
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('imagine-bot start checks Discord before the model', () => {
  let emulator: DiscordEmulator;
  before(async () => {
    emulator = await startDiscordEmulator();
  });
  after(async () => {
    await emulator?.stop();
  });

  test('Discord unreachable: one line naming the API base and the network error', async () => {
    const apiBase = `http://127.0.0.1:${await closedPort()}/api`;
    const result = await start({ DISCORD_TOKEN: WELL_FORMED_TOKEN, DISCORD_API_BASE: apiBase });
    assertRefusedBeforeTheModel(result, new RegExp(`^error: cannot reach Discord at ${apiBase.replace(/[.]/g, '\\.')} \\(ECONNREFUSED\\): check`), WELL_FORMED_TOKEN);
  });

  test('a token Discord refuses (401): one line saying to reset it', async () => {
    const result = await start({ DISCORD_TOKEN: WELL_FORMED_TOKEN, DISCORD_API_BASE: emulator.apiBase, DISCORD_CDN_BASE: emulator.cdnBase });
    assertRefusedBeforeTheModel(result, /^error: Discord refused DISCORD_TOKEN \(401 Unauthorized\): .*Reset Token/, WELL_FORMED_TOKEN);
    // It was Discord (the emulator) that said so, once, on GET /users/@me.
    const checks = emulator.requestLog.filter((entry) => entry.route === '/users/@me');
    assert.deepEqual(checks.map((entry) => [entry.method, entry.status]), [['GET', 401]]);
  });

  test('an accepted token goes on to the model (which here is missing, so that is where it stops)', async () => {
    const result = await start({ ...emulator.botEnv() });
    assert.equal(result.code, 1, `${result.stdout}${result.stderr}`);
    assert.match(`${result.stdout}${result.stderr}`, /Discord accepted the token/);
    assert.match(result.stderr, /^error: .*model_index\.json/m);
  });
});

test('start --shards with a share of the shards on the local backend: one line, before Discord or the model', async () => {
  const result = await runCli(['start', '--no-deploy', '--shards', '0', '--shard-count', '2'], {
    cwd: work,
    env: { DISCORD_TOKEN: WELL_FORMED_TOKEN, DISCORD_APP_ID: APP_ID, IMAGINE_MODEL: notAModel, IMAGINE_DATA_DIR: join(work, 'data'), KEYV_URL: '', IMAGINE_QUEUE_BACKEND: 'local' },
    timeoutMs: 60_000,
  });
  assertRefusedBeforeTheModel(result, /^error: this process would run shard\(s\) 0 of 2, .*several bot processes need queue\.backend "redis"/, WELL_FORMED_TOKEN);
  assert.doesNotMatch(`${result.stdout}${result.stderr}`, /Discord accepted the token/);
});
