import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, createLoggerFromConfig, REDACTED } from '../src/log.js';

const DISCORD_TOKEN = 'MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhIjKl.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789ab';
const HF_TOKEN = 'hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345';
/** A secret with no recognisable shape: only the configured-values scrubber can catch it. */
const SHAPELESS = 'plainsecretvalue-42';

function collector(): { lines: string[]; write(line: string): void } {
  const lines: string[] = [];
  return { lines, write: (line: string) => void lines.push(line) };
}

test('JSON lines with level, time and message', () => {
  const out = collector();
  const log = createLogger({ destination: out, level: 'debug' });
  log.debug({ jobId: 7 }, 'job started');
  log.trace('not at this level');
  assert.equal(out.lines.length, 1);
  const record = JSON.parse(out.lines[0] ?? '') as Record<string, unknown>;
  assert.equal(record['msg'], 'job started');
  assert.equal(record['jobId'], 7);
  assert.equal(record['level'], 20);
  assert.equal(typeof record['time'], 'string');
});

test('the level comes from LOG_LEVEL when not given', (t) => {
  const before = process.env['LOG_LEVEL'];
  t.after(() => {
    if (before === undefined) delete process.env['LOG_LEVEL'];
    else process.env['LOG_LEVEL'] = before;
  });
  process.env['LOG_LEVEL'] = 'warn';
  const out = collector();
  const log = createLogger({ destination: out });
  log.info('hidden');
  log.warn('shown');
  assert.deepEqual(out.lines.map((l) => (JSON.parse(l) as { msg: string }).msg), ['shown']);
});

test('tokens never appear in output: fields, headers, messages, errors, nested config', () => {
  const out = collector();
  const log = createLogger({ destination: out, secrets: [DISCORD_TOKEN, HF_TOKEN, SHAPELESS] });
  log.info({ token: DISCORD_TOKEN }, 'login');
  log.info({ request: { headers: { authorization: `Bot ${DISCORD_TOKEN}` } } }, 'rest call');
  log.info({ headers: { Authorization: `Bearer ${HF_TOKEN}` } }, 'hub call');
  log.info({ config: { discord: { token: DISCORD_TOKEN }, hub: { token: HF_TOKEN } } }, 'config');
  log.info(`connecting with ${DISCORD_TOKEN} and ${SHAPELESS}`);
  log.error({ err: new Error(`401 for token ${HF_TOKEN}`) }, 'request failed');
  log.warn({ url: 'redis://user:hunter2secret@redis:6379' }, 'keyv');
  log.info({ note: `header was "authorization: Bearer ${SHAPELESS}"` }, 'raw header text');
  const text = out.lines.join('');
  assert.equal(out.lines.length, 8);
  for (const secret of [DISCORD_TOKEN, HF_TOKEN, SHAPELESS, 'hunter2secret']) assert.ok(!text.includes(secret), `leaked ${secret}`);
  // The lines are still there and still JSON, with the secrets replaced.
  for (const line of out.lines) JSON.parse(line);
  assert.equal(text.split(REDACTED).length - 1 >= 8, true);
  assert.ok(text.includes('request failed'));
});

test('shape patterns catch tokens the logger was not told about', () => {
  const out = collector();
  const log = createLogger({ destination: out });
  log.info(`token ${DISCORD_TOKEN} hf ${HF_TOKEN}`);
  assert.ok(!out.lines.join('').includes(DISCORD_TOKEN));
  assert.ok(!out.lines.join('').includes(HF_TOKEN));
});

test('pretty output is scrubbed too', async () => {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  const log = createLogger({ destination: sink, pretty: true, secrets: [SHAPELESS] });
  log.info({ token: DISCORD_TOKEN }, `pretty ${SHAPELESS}`);
  // pino-pretty hands lines on through a stream pipeline: wait for the line rather than for a fixed time.
  for (let waited = 0; !text.includes('\n') && waited < 5000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.match(text, /INFO/);
  assert.match(text, /pretty \[Redacted\]/);
  assert.ok(!text.includes(DISCORD_TOKEN) && !text.includes(SHAPELESS));
  assert.ok(!text.trimStart().startsWith('{'), 'pretty output is not JSON');
});

test('createLoggerFromConfig uses the configured level and secrets', () => {
  const out = collector();
  const log = createLoggerFromConfig({ log: { level: 'error' }, discord: { token: SHAPELESS, apiBase: '', cdnBase: '', devGuildId: null, shards: 'auto', shardCount: 'auto' }, hub: { endpoint: '', cacheDir: '', token: undefined } }, { destination: out });
  log.warn('below level');
  log.error(`failed with ${SHAPELESS}`);
  assert.equal(out.lines.length, 1);
  assert.ok(!out.lines[0]?.includes(SHAPELESS));
});
