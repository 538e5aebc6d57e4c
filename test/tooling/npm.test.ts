// npm in this project: no warning on every command (npm 11 warns about unknown keys in a project .npmrc, and npm 12
// stops reading them), and every dependency's install script is either allowed or denied by name in `allowScripts`,
// so that onnxruntime-node's CUDA download from NuGet never runs during `npm install` on npm 11 and 12.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

function npm(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  // Without npm_config_* from a surrounding `npm test`: what a person typing the command gets.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));
  const run = spawnSync('npm', args, { cwd: ROOT, env, encoding: 'utf8' });
  assert.ifError(run.error);
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

const npmMajor = Number(/^(\d+)\./.exec(npm('--version').stdout.trim())?.[1] ?? 0);

test('an npm command in the project prints no warning about the project configuration', () => {
  const run = npm('pkg', 'get', 'name');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), '"imagine-bot"');
  assert.doesNotMatch(run.stderr, /Unknown project config/);
});

test('allowScripts covers every install script in the tree (onnxruntime-node\'s denied)', { skip: npmMajor < 11 ? `npm ${npmMajor} has no allowScripts` : false }, () => {
  const pending = npm('approve-scripts', '--allow-scripts-pending');
  assert.equal(pending.status, 0, pending.stderr);
  assert.match(pending.stdout, /No packages with unreviewed install scripts/, pending.stdout);
});
