import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, ConfigError, ENV_SETTINGS } from '../../src/config/index.js';
import { ImagineError } from '../../src/errors.js';

/** A fresh working folder with optional config/local.json and .env. */
function workspace(files: { local?: unknown; env?: string; other?: Record<string, string> } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'imagine-config-'));
  if (files.local !== undefined) {
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'local.json'), typeof files.local === 'string' ? files.local : JSON.stringify(files.local));
  }
  if (files.env !== undefined) writeFileSync(join(dir, '.env'), files.env);
  for (const [name, content] of Object.entries(files.other ?? {})) writeFileSync(join(dir, name), content);
  return dir;
}

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.ok(error instanceof ImagineError);
    assert.equal(error.message, error.problems.join('\n'));
    return error.problems;
  }
  assert.fail('expected loadConfig to throw');
}

test('defaults load with no files and no environment, with derived paths made absolute', (t) => {
  const dir = workspace();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ env: {}, cwd: dir });
  assert.equal(config.generation.defaults.steps, 30);
  assert.equal(config.generation.defaults.cfg, 7);
  assert.equal(config.generation.defaults.size, '512x512');
  assert.equal(config.generation.defaults.scheduler, null);
  assert.equal(config.generation.limits.maxCount, 4);
  assert.equal(config.preview.minIntervalMs, 1500);
  assert.equal(config.discord.apiBase, 'https://discord.com/api');
  assert.equal(config.discord.token, undefined);
  assert.equal(config.storage.dataDir, join(dir, 'data'));
  assert.equal(config.storage.sqlitePath, join(dir, 'data', 'imagine.sqlite'));
  assert.equal(config.storage.keyvUrl, '');
  assert.equal(config.model.provider, 'auto');
  assert.equal(config.model.pinUnetShapes, false);
  assert.equal(config.model.fuseAttention, false);
  assert.equal(config.log.level, 'info');
});

test('config/local.json overrides defaults; environment beats JSON; .env fills what the environment lacks', (t) => {
  const dir = workspace({
    local: { generation: { defaults: { steps: 20 } }, model: { provider: 'cpu' }, storage: { dataDir: '/srv/imagine' } },
    env: 'DISCORD_TOKEN=from-dotenv-file-token\nIMAGINE_PROVIDER=cuda\nLOG_LEVEL=debug\n',
  });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ env: { LOG_LEVEL: 'warn', IMAGINE_MODEL: 'owner/model@onnx' }, cwd: dir });
  assert.equal(config.generation.defaults.steps, 20);
  assert.equal(config.generation.defaults.cfg, 7, 'untouched siblings keep their defaults');
  assert.equal(config.model.provider, 'cuda', '.env beats local.json');
  assert.equal(config.log.level, 'warn', 'the real environment beats .env');
  assert.equal(config.discord.token, 'from-dotenv-file-token');
  assert.equal(config.model.path, 'owner/model@onnx');
  assert.equal(config.storage.dataDir, '/srv/imagine');
  assert.equal(config.storage.sqlitePath, '/srv/imagine/imagine.sqlite');
});

test('empty variables (as in a freshly copied .env.example) count as unset', (t) => {
  const dir = workspace({ env: 'DISCORD_TOKEN=\nDISCORD_APP_ID=\nIMAGINE_MODEL=\n' });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({ env: {}, cwd: dir });
  assert.equal(config.discord.token, undefined);
  assert.equal(config.discord.appId, undefined);
  assert.equal(config.model.path, '');
});

test('generation.defaults.scheduler takes null or a scheduler the engine has, nothing else', (t) => {
  const wrong = workspace({ local: { generation: { defaults: { scheduler: 'euler-karras' } } } });
  const right = workspace({ local: { generation: { defaults: { scheduler: 'dpmpp_2m' } } } });
  t.after(() => {
    rmSync(wrong, { recursive: true, force: true });
    rmSync(right, { recursive: true, force: true });
  });
  assert.deepEqual(problemsOf(() => loadConfig({ env: {}, cwd: wrong })), [
    'config/local.json: generation.defaults.scheduler must be null (the model\'s own) or one of pndm, euler, euler_a, ddim, dpmpp_2m, lms, heun, dpmpp_2m_sde, unipc, lcm (got "euler-karras")',
  ]);
  assert.equal(loadConfig({ env: {}, cwd: right }).generation.defaults.scheduler, 'dpmpp_2m');
});

test('generation.defaults.karras picks the Karras variant of a default scheduler that has one', (t) => {
  const dirs = [
    workspace({ local: { generation: { defaults: { scheduler: 'dpmpp_2m', karras: true } } } }),
    workspace({ local: { generation: { defaults: { scheduler: 'ddim', karras: true } } } }),
    workspace({ local: { generation: { defaults: { karras: true } } } }),
  ] as const;
  t.after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  const { defaults } = loadConfig({ env: {}, cwd: dirs[0] }).generation;
  assert.deepEqual([defaults.scheduler, defaults.karras], ['dpmpp_2m', true]);
  assert.deepEqual(problemsOf(() => loadConfig({ env: {}, cwd: dirs[1] })), [
    'config/local.json: generation.defaults.karras needs generation.defaults.scheduler set to one of euler, dpmpp_2m, lms, heun, dpmpp_2m_sde, unipc, the schedulers with a Karras variant (got "ddim")',
  ]);
  assert.deepEqual(problemsOf(() => loadConfig({ env: {}, cwd: dirs[2] })), [
    'config/local.json: generation.defaults.karras needs generation.defaults.scheduler set to one of euler, dpmpp_2m, lms, heun, dpmpp_2m_sde, unipc, the schedulers with a Karras variant (got null)',
  ]);
});

test('worker.maxBatch: continuous batching is off by default, and refused with pinned UNet shapes', (t) => {
  const dirs = [
    workspace({ local: {} }),
    workspace({ local: { worker: { maxBatch: 8 } } }),
    workspace({ local: { worker: { maxBatch: 8 }, model: { pinUnetShapes: true } } }),
  ] as const;
  t.after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  assert.equal(loadConfig({ env: {}, cwd: dirs[0] }).worker.maxBatch, 1);
  assert.equal(loadConfig({ env: {}, cwd: dirs[1] }).worker.maxBatch, 8);
  assert.deepEqual(problemsOf(() => loadConfig({ env: {}, cwd: dirs[2] })), [
    'config/local.json: worker.maxBatch above 1 (continuous batching) cannot run with model.pinUnetShapes, which pins the UNet batch: set one of them back (got maxBatch 8)',
  ]);
});

test('one line per wrong value, naming the file and the key, and what it got', (t) => {
  const dir = workspace({
    local: {
      generation: { defaults: { steps: 'abc', size: '500x500' }, limits: { sizes: [] } },
      preview: { format: 'gif' },
      queue: { maxPerUser: 0 },
      safety: { checkInNsfwChannels: 'yes' },
    },
  });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const problems = problemsOf(() => loadConfig({ env: {}, cwd: dir }));
  assert.deepEqual([...problems].sort(), [
    'config/local.json: generation.defaults.size must be WIDTHxHEIGHT with both sides multiples of 8 between 64 and 2048, e.g. "512x512" (got "500x500")',
    'config/local.json: generation.defaults.steps must be an integer between 1 and 150 (got "abc")',
    'config/local.json: generation.limits.sizes must be a non-empty list of sizes such as ["512x512"] (got [])',
    'config/local.json: preview.format must be one of webp, jpeg (got "gif")',
    'config/local.json: queue.maxPerUser must be an integer between 1 and 100 (got 0)',
    'config/local.json: safety.checkInNsfwChannels must be true or false (got "yes")',
  ]);
});

test('environment values are blamed on their variable', (t) => {
  const dir = workspace();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const problems = problemsOf(() =>
    loadConfig({ env: { IMAGINE_PROVIDER: 'gpu', DISCORD_APP_ID: 'my-app', KEYV_URL: 'localhost:6379', LOG_LEVEL: 'loud' }, cwd: dir }),
  );
  assert.deepEqual([...problems].sort(), [
    'env DISCORD_APP_ID: discord.appId must be a Discord id (17 to 20 digits) (got "my-app")',
    'env IMAGINE_PROVIDER: model.provider must be one of auto, cuda, webgpu, cpu (got "gpu")',
    'env KEYV_URL: storage.keyvUrl must be "" (SQLite) or a URL such as redis://localhost:6379 (got "localhost:6379")',
    'env LOG_LEVEL: log.level must be one of fatal, error, warn, info, debug, trace, silent (got "loud")',
  ]);
});

test('misspelled keys are reported rather than silently ignored', (t) => {
  const dir = workspace({ local: { generation: { defualts: { steps: 10 } }, queueu: {} } });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const problems = problemsOf(() => loadConfig({ env: {}, cwd: dir }));
  assert.deepEqual([...problems].sort(), [
    'config/local.json: generation.defualts is not a known setting (see config/README.md)',
    'config/local.json: queueu is not a known setting (see config/README.md)',
  ]);
});

test('a token in a JSON file is refused, and its value is never echoed', (t) => {
  const token = 'MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789';
  const dir = workspace({ local: { discord: { token, appId: '123456789012345678' }, hub: { token: 'hf_abcdefghijklmnopqrstuvwxyz' } } });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const problems = problemsOf(() => loadConfig({ env: {}, cwd: dir }));
  assert.deepEqual([...problems].sort(), [
    'config/local.json: discord.appId must not be set in a JSON file: put DISCORD_APP_ID=… in .env instead',
    'config/local.json: discord.token must not be set in a JSON file: put DISCORD_TOKEN=… in .env instead',
    'config/local.json: hub.token must not be set in a JSON file: put HF_TOKEN=… in .env instead',
  ]);
  assert.ok(!problems.join('\n').includes(token));
});

test('settings that contradict each other are reported', (t) => {
  const dir = workspace({ local: { generation: { defaults: { steps: 60, size: '768x768' }, limits: { maxSteps: 40 } } } });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const problems = problemsOf(() => loadConfig({ env: {}, cwd: dir }));
  assert.deepEqual([...problems].sort(), [
    'config/local.json: generation.defaults.size must be one of generation.limits.sizes (512x512, 512x768, 768x512) (got "768x768")',
    'config/local.json: generation.defaults.steps must not exceed generation.limits.maxSteps (40) (got 60)',
  ]);
});

test('--config and IMAGINE_CONFIG name the override file instead of config/local.json', (t) => {
  const dir = workspace({ local: { queue: { maxTotal: 7 } }, other: { 'prod.json': JSON.stringify({ queue: { maxTotal: 99 } }), 'bad.json': '{ "queue": ' } });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(loadConfig({ env: {}, cwd: dir }).queue.maxTotal, 7);
  assert.equal(loadConfig({ env: {}, cwd: dir, configPath: 'prod.json' }).queue.maxTotal, 99);
  assert.equal(loadConfig({ env: { IMAGINE_CONFIG: join(dir, 'prod.json') }, cwd: dir }).queue.maxTotal, 99);
  assert.deepEqual(problemsOf(() => loadConfig({ env: {}, cwd: dir, configPath: 'missing.json' })), ['--config missing.json: file not found']);
  assert.deepEqual(problemsOf(() => loadConfig({ env: { IMAGINE_CONFIG: 'nope.json' }, cwd: dir })), ['IMAGINE_CONFIG nope.json: file not found']);
  const [parseProblem, ...rest] = problemsOf(() => loadConfig({ env: {}, cwd: dir, configPath: 'bad.json' }));
  assert.equal(rest.length, 0);
  assert.match(parseProblem ?? '', /^bad\.json: is not valid JSON \(/);
});

test('the Hub cache folder follows huggingface_hub: HF_HUB_CACHE, then HF_HOME/hub', (t) => {
  const dir = workspace();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(loadConfig({ env: { HF_HOME: '/models/hf' }, cwd: dir }).hub.cacheDir, '/models/hf/hub');
  assert.equal(loadConfig({ env: { HF_HOME: '/models/hf', HF_HUB_CACHE: '/x/cache' }, cwd: dir }).hub.cacheDir, '/x/cache');
  assert.equal(loadConfig({ env: { XDG_CACHE_HOME: '/xdg' }, cwd: dir }).hub.cacheDir, '/xdg/huggingface/hub');
  assert.equal(loadConfig({ env: { HF_ENDPOINT: 'http://127.0.0.1:9999/' }, cwd: dir }).hub.endpoint, 'http://127.0.0.1:9999');
});

test('every environment variable the loader reads is documented in .env.example', () => {
  const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
  for (const { env } of ENV_SETTINGS) assert.match(example, new RegExp(`^#? ?${env}=`, 'm'), `${env} missing from .env.example`);
  for (const env of ['IMAGINE_CONFIG', 'HF_HOME']) assert.match(example, new RegExp(`^#? ?${env}=`, 'm'), `${env} missing from .env.example`);
});

test('every key of config/default.json is documented in config/README.md', () => {
  const defaults = JSON.parse(readFileSync(new URL('../../config/default.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  const readme = readFileSync(new URL('../../config/README.md', import.meta.url), 'utf8');
  const leaves: string[] = [];
  const walk = (node: unknown, prefix: string) => {
    if (node !== null && typeof node === 'object' && !Array.isArray(node)) {
      for (const [key, value] of Object.entries(node)) walk(value, prefix ? `${prefix}.${key}` : key);
    } else leaves.push(prefix);
  };
  walk(defaults, '');
  assert.ok(leaves.length > 30);
  for (const key of leaves) assert.ok(readme.includes(`\`${key}\``), `${key} is not documented in config/README.md`);
});

test('nulls, sections that are not objects, and either-or values get readable lines too', (t) => {
  const dir = workspace({ local: { generation: { defaults: { steps: null, scheduler: '' } }, storage: { sqlitePath: '' }, preview: 5 } });
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const problems = problemsOf(() => loadConfig({ env: { DISCORD_DEV_GUILD_ID: 'abc' }, cwd: dir }));
  assert.deepEqual([...problems].sort(), [
    'config/local.json: generation.defaults.scheduler must be null (the model\'s own) or one of pndm, euler, euler_a, ddim, dpmpp_2m, lms, heun, dpmpp_2m_sde, unipc, lcm (got "")',
    'config/local.json: generation.defaults.steps must be an integer between 1 and 150 (got null)',
    'config/local.json: preview must be an object of settings ({ … }) (got 5)',
    'config/local.json: storage.sqlitePath must be null or a file path (got "")',
    'env DISCORD_DEV_GUILD_ID: discord.devGuildId must be null or a Discord id (17 to 20 digits) (got "abc")',
  ]);
});
