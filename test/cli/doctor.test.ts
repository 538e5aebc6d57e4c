import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkModelFolder,
  checkTokenFormat,
  externalDataLocations,
  formatDoctorReport,
  heartbeatPath,
  runDoctor,
  startHeartbeat,
  type DoctorCheck,
} from '../../src/cli/doctor.js';
import { BOT_PERMISSIONS, firstRunGuide, inviteUrl, missingModelGuide } from '../../src/cli/first-run.js';
import { runCli } from '../helpers/cli.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURE = join(ROOT, 'test', 'fixtures', 'tiny-sd');
const APP_ID = '1234567890123456789';
/** Shaped like a real bot token: base64url(bot id) . timestamp . hmac. */
const TOKEN = `${Buffer.from(APP_ID).toString('base64url')}.GaBcDe.${'x1Y2z3'.repeat(6)}`;

function workspace(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'imagine-doctor-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function byName(checks: DoctorCheck[], name: string): DoctorCheck {
  const check = checks.find((c) => c.name === name);
  assert.ok(check, `no "${name}" check in ${JSON.stringify(checks.map((c) => c.name))}`);
  return check;
}

function goodEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  return { DISCORD_TOKEN: TOKEN, DISCORD_APP_ID: APP_ID, IMAGINE_MODEL: FIXTURE, IMAGINE_DATA_DIR: join(dir, 'data'), ...extra };
}

test('bot token shape: the usual paste mistakes are named, the token never echoed', () => {
  assert.deepEqual(checkTokenFormat(TOKEN), { ok: true, botId: APP_ID });
  const cases: Array<[string, RegExp]> = [
    [`Bot ${TOKEN}`, /starts with "Bot "/],
    [`"${TOKEN}"`, /wrapped in quotes/],
    [`${TOKEN.slice(0, 30)} ${TOKEN.slice(30)}`, /spaces or line breaks/],
    ['abcdefghijklmnopqrstuvwxyzABCDEF', /OAuth2 client secret/],
    [TOKEN.split('.').slice(0, 2).join('.'), /2 parts separated by dots instead of 3/],
    [`${Buffer.from('not-an-id').toString('base64url')}.GaBcDe.${'y'.repeat(38)}`, /first part does not encode a bot id/],
    [`${TOKEN.split('.')[0]}.GaBcDe.short`, /too short/],
  ];
  for (const [token, problem] of cases) {
    const result = checkTokenFormat(token);
    assert.equal(result.ok, false, token);
    assert.match(result.problem ?? '', problem);
    assert.ok(!(result.problem ?? '').includes(TOKEN.split('.')[2] ?? '#'), 'no token text in the problem');
  }
});

test('a complete setup passes every check, and the report never shows the token', async (t) => {
  const dir = workspace(t);
  const checks = await runDoctor({ env: goodEnv(dir), cwd: dir });
  const report = formatDoctorReport(checks);
  assert.deepEqual(
    checks.filter((c) => c.status === 'fail'),
    [],
    report,
  );
  assert.equal(byName(checks, 'Discord token').detail, `well-formed, for bot user ${APP_ID} (Discord checks the rest at login)`);
  assert.equal(byName(checks, 'Model').detail, `${FIXTURE} (configs, tokenizer and ONNX files readable)`);
  assert.equal(byName(checks, 'Data folder').detail, `${join(dir, 'data')} is writable`);
  assert.equal(byName(checks, 'Storage').detail, `SQLite at ${join(dir, 'data', 'imagine.sqlite')}`);
  // The real engine picks the provider: on a machine without a GPU, auto falls back to the CPU with a warning.
  const provider = byName(checks, 'Execution provider');
  assert.match(provider.detail, /^(cuda|webgpu|cpu) \(auto\)/);
  assert.ok(!report.includes(TOKEN) && !report.includes(TOKEN.split('.')[2] ?? '#'));
  assert.match(report, /^✔ Configuration: valid$/m);
  assert.match(report, /^All checks passed/m);
});

test('missing token and app id fail with what to do', async (t) => {
  const dir = workspace(t);
  const checks = await runDoctor({ env: { IMAGINE_MODEL: FIXTURE, IMAGINE_DATA_DIR: join(dir, 'data') }, cwd: dir, quick: true });
  const token = byName(checks, 'Discord token');
  assert.equal(token.status, 'fail');
  assert.equal(token.detail, 'DISCORD_TOKEN is not set');
  assert.match(token.fix ?? '', /imagine-bot start/);
  assert.equal(byName(checks, 'Application id').status, 'fail');
  const report = formatDoctorReport(checks);
  assert.match(report, /^✖ Discord token: DISCORD_TOKEN is not set\n {4}→ create a bot at https:\/\/discord\.com\/developers\/applications/m);
  assert.match(report, /^2 checks failed\.$/m);
});

test('a token from another application is a warning, a malformed one a failure', async (t) => {
  const dir = workspace(t);
  const other = await runDoctor({ env: goodEnv(dir, { DISCORD_APP_ID: '987654321098765432' }), cwd: dir, quick: true });
  assert.equal(byName(other, 'Application id').status, 'warn');
  assert.match(byName(other, 'Application id').detail, /but the token belongs to bot 1234567890123456789/);
  const malformed = await runDoctor({ env: goodEnv(dir, { DISCORD_TOKEN: `Bot ${TOKEN}` }), cwd: dir, quick: true });
  assert.equal(byName(malformed, 'Discord token').status, 'fail');
  assert.ok(!formatDoctorReport(malformed).includes(TOKEN));
});

test('configuration errors are reported one per line', async (t) => {
  const dir = workspace(t);
  const checks = await runDoctor({ env: { IMAGINE_PROVIDER: 'gpu', LOG_LEVEL: 'loud' }, cwd: dir });
  assert.deepEqual(
    checks.map((c) => `${c.status} ${c.detail}`).sort(),
    [
      'fail env IMAGINE_PROVIDER: model.provider must be one of auto, cuda, webgpu, cpu (got "gpu")',
      'fail env LOG_LEVEL: log.level must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
    ],
  );
});

test('the unet external weights file is found in the ONNX graph', () => {
  assert.deepEqual(externalDataLocations(readFileSync(join(FIXTURE, 'unet', 'model.onnx'))), ['weights.pb']);
  assert.deepEqual(externalDataLocations(readFileSync(join(FIXTURE, 'vae_decoder', 'model.onnx'))), []);
});

test('broken model folders: missing external weights, an LFS pointer, bad JSON; --quick only looks for files', (t) => {
  const dir = workspace(t);
  const model = join(dir, 'model');
  cpSync(FIXTURE, model, { recursive: true });
  rmSync(join(model, 'unet', 'weights.pb'));
  writeFileSync(join(model, 'text_encoder', 'model.onnx'), 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n');
  writeFileSync(join(model, 'scheduler', 'scheduler_config.json'), '{ "_class_name": ');
  rmSync(join(model, 'tokenizer', 'merges.txt'));

  const [full, ...rest] = checkModelFolder(model, { safetyChecker: true });
  assert.equal(rest.length, 0);
  assert.equal(full?.status, 'fail');
  const detail = full?.detail ?? '';
  assert.ok(detail.startsWith(`${model}: `));
  assert.match(detail, /text_encoder\/model\.onnx is a Git LFS pointer, not the model/);
  assert.match(detail, /unet\/model\.onnx keeps its weights in weights\.pb, which is missing next to it/);
  assert.match(detail, /scheduler\/scheduler_config\.json is not valid JSON/);
  assert.match(detail, /tokenizer\/merges\.txt is missing/);

  const [quick] = checkModelFolder(model, { quick: true });
  assert.equal(quick?.status, 'ok', 'quick mode does not open files');
  rmSync(join(model, 'vae_decoder'), { recursive: true });
  assert.match(checkModelFolder(model, { quick: true })[0]?.detail ?? '', /vae_decoder\/model\.onnx is missing/);
});

test('a model without a safety checker is a warning when the checker is on', (t) => {
  const dir = workspace(t);
  const model = join(dir, 'model');
  cpSync(FIXTURE, model, { recursive: true });
  rmSync(join(model, 'safety_checker'), { recursive: true });
  const checks = checkModelFolder(model, { safetyChecker: true });
  assert.deepEqual(checks.map((c) => c.status), ['ok', 'warn']);
  assert.deepEqual(checkModelFolder(model, { safetyChecker: false }).map((c) => c.status), ['ok']);
});

test('a model that is not there says how to pull it', async (t) => {
  const dir = workspace(t);
  const checks = await runDoctor({ env: goodEnv(dir, { IMAGINE_MODEL: 'someone/sd15-onnx@onnx', HF_HUB_CACHE: join(dir, 'hub') }), cwd: dir, quick: true });
  assert.match(byName(checks, 'Model').detail, /Model someone\/sd15-onnx@onnx is not in the Hugging Face cache .*: run `imagine-bot models pull someone\/sd15-onnx@onnx`/);
});

test('an unwritable data folder fails', async (t) => {
  const dir = workspace(t);
  writeFileSync(join(dir, 'a-file'), '');
  const checks = await runDoctor({ env: goodEnv(dir, { IMAGINE_DATA_DIR: join(dir, 'a-file', 'data') }), cwd: dir, quick: true });
  const data = byName(checks, 'Data folder');
  assert.equal(data.status, 'fail');
  assert.match(data.detail, /is not writable \(ENOTDIR\)/);
});

test('KEYV_URL: a closed port fails, a real Redis answers PING, a wrong password is named', async (t) => {
  const dir = workspace(t);
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = server.address() as { port: number };
      server.close(() => resolve(free));
    });
  });
  const closed = await runDoctor({ env: goodEnv(dir, { KEYV_URL: `redis://127.0.0.1:${port}` }), cwd: dir, quick: true });
  assert.equal(byName(closed, 'Storage').status, 'fail');
  assert.match(byName(closed, 'Storage').detail, /is not reachable: ECONNREFUSED/);

  if (spawnSync('redis-server', ['--version']).status !== 0) {
    t.diagnostic('redis-server not installed: the live Redis half of this test is skipped (.ci/run installs it)');
    return;
  }
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--requirepass', 's3cret-pass'], { stdio: 'ignore' });
  t.after(() => redis.kill());
  // Wait until it accepts connections (no fixed sleep: a loaded machine may take a while).
  for (let attempt = 0; ; attempt++) {
    const checks = await runDoctor({ env: goodEnv(dir, { KEYV_URL: `redis://:s3cret-pass@127.0.0.1:${port}` }), cwd: dir, quick: true });
    const storage = byName(checks, 'Storage');
    if (storage.status === 'ok') {
      assert.equal(storage.detail, `redis://:***@127.0.0.1:${port} reachable (PING → PONG)`);
      break;
    }
    assert.ok(attempt < 100, `redis-server did not come up: ${storage.detail}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const wrong = await runDoctor({ env: goodEnv(dir, { KEYV_URL: `redis://:wrong-pass@127.0.0.1:${port}` }), cwd: dir, quick: true });
  assert.equal(byName(wrong, 'Storage').status, 'fail');
  assert.match(byName(wrong, 'Storage').detail, /Redis answered WRONGPASS \(check the password in KEYV_URL\)/);
  assert.ok(!formatDoctorReport(wrong).includes('wrong-pass'));
});

test('heartbeat: a fresh one passes, a stale one fails --quick', async (t) => {
  const dir = workspace(t);
  const env = goodEnv(dir);
  const config = { storage: { dataDir: join(dir, 'data') } };
  const stop = startHeartbeat(config as never, 60_000);
  t.after(stop);
  const fresh = await runDoctor({ env, cwd: dir, quick: true });
  assert.equal(byName(fresh, 'Bot heartbeat').status, 'ok');
  const old = new Date(Date.now() - 600_000);
  utimesSync(heartbeatPath(config as never), old, old);
  const stale = await runDoctor({ env, cwd: dir, quick: true });
  assert.equal(byName(stale, 'Bot heartbeat').status, 'fail');
  assert.match(byName(stale, 'Bot heartbeat').detail, /^last beat (59\d|60\d) s ago/);
});

test('`imagine-bot doctor` as a command: report on stdout, non-zero exit when a check fails', async (t) => {
  const dir = workspace(t);
  const driver = `
    import { Command } from ${JSON.stringify(import.meta.resolve('commander'))};
    import { registerDoctorCommand } from ${JSON.stringify(join(ROOT, 'src/cli/doctor.ts'))};
    const program = new Command('imagine-bot').exitOverride();
    registerDoctorCommand(program);
    try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (error) { console.error('error: ' + error.message); process.exitCode = 1; }
  `;
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', driver, 'doctor', '--quick'], {
      cwd: dir,
      env: { PATH: process.env['PATH'] ?? '', HOME: dir, ...env },
      encoding: 'utf8',
    });
  const good = run(goodEnv(dir));
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /^✔ Discord token: well-formed/m);
  assert.ok(!good.stdout.includes(TOKEN));
  const bad = run({ IMAGINE_DATA_DIR: join(dir, 'data') });
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /^✖ Discord token: DISCORD_TOKEN is not set$/m);
  assert.match(bad.stderr, /^error: doctor found 3 problems \(see above\)\.$/m);
});

test('`imagine-bot doctor` through the real CLI states the failure count once: the report\'s last line, no error line', async (t) => {
  const dir = workspace(t);
  const result = await runCli(['doctor', '--quick'], { cwd: dir, env: { DISCORD_TOKEN: '', DISCORD_APP_ID: '', IMAGINE_MODEL: FIXTURE, IMAGINE_DATA_DIR: join(dir, 'data') } });
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stdout, /^✖ Discord token: DISCORD_TOKEN is not set$/m);
  assert.match(result.stdout.trimEnd(), /\n2 checks failed\.$/);
  assert.equal(`${result.stdout}${result.stderr}`.match(/\b2 (checks failed|problems)\b/g)?.length, 1, `${result.stdout}${result.stderr}`);
  assert.equal(result.stderr, '');
});

test('first-run guide: portal, .env lines, invite URL with scopes and permissions, deploy-commands', () => {
  // View Channel (1<<10) + Send Messages (1<<11) + Embed Links (1<<14) + Attach Files (1<<15) + Read Message History (1<<16)
  assert.equal(BOT_PERMISSIONS, 1024n + 2048n + 16384n + 32768n + 65536n);
  assert.equal(BOT_PERMISSIONS, 117760n);
  const url = new URL(inviteUrl(APP_ID));
  assert.equal(url.origin + url.pathname, 'https://discord.com/oauth2/authorize');
  assert.equal(url.searchParams.get('client_id'), APP_ID);
  assert.equal(url.searchParams.get('scope'), 'bot applications.commands');
  assert.equal(url.searchParams.get('permissions'), '117760');

  const guide = firstRunGuide({ appId: APP_ID });
  assert.match(guide, /https:\/\/discord\.com\/developers\/applications/);
  assert.match(guide, /^ +DISCORD_TOKEN=<the bot token>$/m);
  assert.match(guide, /^ +DISCORD_APP_ID=<the application id>$/m);
  assert.ok(guide.includes(inviteUrl(APP_ID)));
  assert.match(guide, /View Channel, Send Messages, Embed Links, Attach Files, Read Message History/);
  assert.match(guide, /^ +imagine-bot deploy-commands$/m);
  assert.match(firstRunGuide(), /client_id=<DISCORD_APP_ID>/);
});

test('missing-model guide: how to pull one and how to point IMAGINE_MODEL at it', () => {
  const guide = missingModelGuide();
  assert.match(guide, /^No model configured yet\.$/m);
  assert.match(guide, /^ +imagine-bot models pull \S+\/\S+$/m);
  assert.match(guide, /IMAGINE_MODEL=/);
  assert.match(guide, /imagine-bot models list/);
  assert.match(missingModelGuide({ problem: 'Model a/b is not in the Hugging Face cache' }), /^No usable model: Model a\/b is not in the Hugging Face cache$/m);
});
