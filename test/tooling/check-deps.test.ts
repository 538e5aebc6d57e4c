// The dependency rule check that `npm test` runs first: it must pass on this repository and fail, naming the file,
// on a copy of it with a deliberately wrong import or an import cycle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const SCRIPT = join(ROOT, 'scripts', 'check-deps.mjs');

function check(root: string): { status: number | null; output: string } {
  const run = spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8' });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

/** Runs the check on a copy of the project's own sources, broken on purpose by `breakIt`. */
function checkBrokenCopy(breakIt: (dir: string) => void): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'imagine-deps-'));
  try {
    cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
    cpSync(join(ROOT, 'commands'), join(dir, 'commands'), { recursive: true });
    breakIt(dir);
    return check(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the repository follows its layers and has no import cycles', () => {
  const { status, output } = check(ROOT);
  assert.equal(status, 0, output);
  assert.match(output, /imports follow the layers, no cycles/);
});

test('an upward import (queue → discord) fails, naming the file and the rule', () => {
  const { status, output } = checkBrokenCopy((dir) => appendFileSync(join(dir, 'src/queue/types.ts'), "\nexport { ImagineBot } from '../discord/bot.js';\n"));
  assert.equal(status, 1, output);
  assert.match(output, /src\/queue\/types\.ts imports src\/discord\/bot\.ts: the queue layer may not import the discord layer/);
});

test('the engine importing the config fails, also as a type-only import', () => {
  const { status, output } = checkBrokenCopy((dir) =>
    appendFileSync(join(dir, 'src/diffusion/png.ts'), "\nimport type { Config } from '../config/index.js';\nexport type Unused = Config;\n"),
  );
  assert.equal(status, 1, output);
  assert.match(output, /src\/diffusion\/png\.ts imports src\/config\/index\.ts: the diffusion layer may not import the config layer/);
});

test('the bot importing the engine fails: only the app layer wires discord/ to diffusion/', () => {
  const { status, output } = checkBrokenCopy((dir) => appendFileSync(join(dir, 'src/discord/render.ts'), "\nexport { randomSeed } from '../diffusion/rng/index.js';\n"));
  assert.equal(status, 1, output);
  assert.match(output, /src\/discord\/render\.ts imports src\/diffusion\/rng\/index\.ts: the discord layer may not import the diffusion layer/);
});

test('the bot importing the app layer (its composition root) fails', () => {
  const { status, output } = checkBrokenCopy((dir) => appendFileSync(join(dir, 'src/discord/render.ts'), "\nimport type { Runtime } from '../app/runtime.js';\nexport type Unused = Runtime;\n"));
  assert.equal(status, 1, output);
  assert.match(output, /src\/discord\/render\.ts imports src\/app\/runtime\.ts: the discord layer may not import the app layer/);
});

test('another layer reaching past the queue\'s entry (src/queue/index.ts) fails', () => {
  const { status, output } = checkBrokenCopy((dir) => appendFileSync(join(dir, 'src/app/runtime.ts'), "\nexport { FairScheduler } from '../queue/fair-scheduler.js';\n"));
  assert.equal(status, 1, output);
  assert.match(output, /src\/app\/runtime\.ts imports src\/queue\/fair-scheduler\.ts: the queue layer is imported only through its entry src\/queue\/index\.ts/);
});

test('an import cycle inside one layer fails, listing the modules around it', () => {
  const { status, output } = checkBrokenCopy((dir) => {
    writeFileSync(join(dir, 'src/diffusion/cycle-a.ts'), "import { b } from './cycle-b.js';\nexport const a = () => b;\n");
    writeFileSync(join(dir, 'src/diffusion/cycle-b.ts'), "import { a } from './cycle-a.js';\nexport const b = () => a;\n");
  });
  assert.equal(status, 1, output);
  assert.match(output, /import cycle: src\/diffusion\/cycle-a\.ts → src\/diffusion\/cycle-b\.ts → src\/diffusion\/cycle-a\.ts/);
});
