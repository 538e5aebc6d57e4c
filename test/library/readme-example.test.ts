import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { readTextChunks } from '../../src/diffusion/png.js';
import { PROJECT_ROOT } from '../../src/util/project.js';
import { runCli } from '../helpers/cli.js';
import { TINY_MODEL } from '../helpers/reference.js';

/**
 * README's "Use the engine as a library" example, run as a user would run it: copied verbatim into a `.mts` file in
 * an empty folder whose `node_modules/imagine-bot` is this package, so `from 'imagine-bot'` resolves through
 * package.json's `exports` to the built `dist/src/index.js` (and, for the type check, `dist/src/index.d.ts`). The
 * model folder it names is the tiny model.
 *
 * It therefore needs `npm run build` first, as CI does (`npm ci`, `npm run build`, `npm test`); after changing the
 * engine, rebuild before running this test.
 */

const README = join(PROJECT_ROOT, 'README.md');
const BUILT_ENTRY = join(PROJECT_ROOT, 'dist/src/index.js');

/** The first ```ts block of the README's library section, and the model folder it loads. */
async function readmeExample(): Promise<{ code: string; modelFolder: string }> {
  const readme = await readFile(README, 'utf8');
  const section = readme.slice(readme.indexOf('## Use the engine as a library'));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(code, 'README.md has a ```ts block under "## Use the engine as a library"');
  const modelFolder = /loadPipeline\('([^']+)'/.exec(code)?.[1];
  assert.ok(modelFolder, "the example loads a model folder with loadPipeline('…')");
  return { code, modelFolder };
}

/** The newest .ts file under `folder` and its modification time. */
function newestSource(folder: string): { file: string; mtimeMs: number } {
  let newest = { file: folder, mtimeMs: 0 };
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    const candidate = entry.isDirectory() ? newestSource(path) : entry.name.endsWith('.ts') ? { file: path, mtimeMs: statSync(path).mtimeMs } : null;
    if (candidate && candidate.mtimeMs > newest.mtimeMs) newest = candidate;
  }
  return newest;
}

function run(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let work: string;
let modelFolder: string;
before(async () => {
  assert.ok(existsSync(BUILT_ENTRY), `${BUILT_ENTRY} is missing: run \`npm run build\` before this test (CI builds before testing)`);
  // A stale build would test yesterday's engine.
  const source = newestSource(join(PROJECT_ROOT, 'src'));
  assert.ok(statSync(BUILT_ENTRY).mtimeMs >= source.mtimeMs, `${source.file} is newer than the build: run \`npm run build\` before this test`);
  const example = await readmeExample();
  modelFolder = example.modelFolder;
  work = await mkdtemp(join(tmpdir(), 'imagine-library-'));
  // A user's project with this package installed, and the model folder the example names.
  await mkdir(join(work, 'node_modules'));
  await symlink(PROJECT_ROOT, join(work, 'node_modules', 'imagine-bot'), 'dir');
  await mkdir(dirname(join(work, modelFolder)), { recursive: true });
  await symlink(TINY_MODEL, join(work, modelFolder), 'dir');
  await writeFile(join(work, 'example.mts'), example.code);
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe("README's library example", () => {
  test('type-checks against the published declarations', async () => {
    await writeFile(
      join(work, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          lib: ['ES2023'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(PROJECT_ROOT, 'node_modules/@types')],
        },
        files: ['example.mts'],
      }),
    );
    const tsc = join(PROJECT_ROOT, 'node_modules/typescript/bin/tsc');
    const result = await run([tsc, '-p', 'tsconfig.json'], work);
    assert.equal(result.code, 0, `tsc:\n${result.stdout}${result.stderr}`);
  });

  test('writes the PNG that `imagine-bot generate` writes for the same request, with its parameters', async () => {
    // tsx only strips the example's types; `imagine-bot` itself is the built JavaScript.
    const result = await run(['--import', import.meta.resolve('tsx'), 'example.mts'], work);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n'), ['lighthouse-0.png']);
    assert.match(result.stderr, /^step 20\/20$/m);
    const png = await readFile(join(work, 'lighthouse-0.png'));

    const { width, height } = await sharp(png).metadata();
    assert.deepEqual([width, height], [256, 256]);
    const parameters = readTextChunks(png).parameters ?? '';
    assert.equal(
      parameters,
      'a lighthouse on a cliff at dusk, oil painting\nNegative prompt: blurry\n' +
        'Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234, Size: 256x256, Model: stable-diffusion-v1-5-onnx, RNG: CPU',
    );

    // The same settings through the CLI (update both if the README example changes).
    const out = join(work, 'cli');
    const cli = await runCli(
      [
        'generate', '--model', join(work, modelFolder), '--prompt', 'a lighthouse on a cliff at dusk, oil painting', '--negative', 'blurry',
        '--seed', '1234', '--steps', '20', '--cfg', '7.5', '--width', '256', '--height', '256', '--scheduler', 'dpmpp_2m', '--karras',
        '--provider', 'auto', '--out', out,
      ],
      { timeoutMs: 600_000 },
    );
    assert.equal(cli.code, 0, cli.stderr);
    assert.ok(png.equals(await readFile(join(out, '0.png'))), 'the example and the CLI wrote the same PNG bytes');
  });
});
