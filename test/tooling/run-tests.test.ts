// The test runner on a machine without redis-server and chromium: the suites that need them are not silently
// dropped but counted as skipped in Node's summary line, each test with the reason and the package to install.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

test('without redis-server and chromium on PATH, their suites are counted as skipped, with the reason', (t) => {
  // A PATH that holds node and the base system's shell tools (the store tests run the `mv` a damaged store's error
  // prints) and nothing else: what a fresh machine without the two packages looks like to the tests.
  const bin = mkdtempSync(join(tmpdir(), 'imagine-bare-path-'));
  t.after(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(process.execPath, join(bin, basename(process.execPath)));
  for (const tool of ['sh', 'mv']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (found) symlinkSync(found, join(bin, tool));
  }
  // The sandbox page suite (3 tests, chromium) and the job store suites (3 tests on SQLite, the same 3 on Redis: the
  // third, two writers on one store, came with several bot processes).
  // Without NODE_TEST_CONTEXT, which tells a nested `node --test` that it runs inside this test and must not run files.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const run = spawnSync(process.execPath, [join(ROOT, 'scripts', 'run-tests.mjs'), 'emulator/page.test', 'queue/storage.test'], {
    cwd: ROOT,
    env: { ...env, PATH: bin },
    encoding: 'utf8',
  });
  const output = `${run.stdout}${run.stderr}`;
  assert.equal(run.status, 0, output);
  assert.match(output, /^# skipped 6$/m, output);
  assert.match(output, /^# fail 0$/m);
  assert.equal(output.match(/# SKIP chromium is not on PATH \(apt-get install -y chromium\)/g)?.length, 3, output);
  assert.equal(output.match(/# SKIP redis-server is not on PATH \(apt-get install -y redis-server\)/g)?.length, 3, output);
});
