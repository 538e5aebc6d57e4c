import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeHub } from './hub-server.js';
import { createProgressReporter } from '../../src/hub/progress.js';
import type { PullProgress } from '../../src/hub/pull.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURE = join(ROOT, 'test', 'fixtures', 'tiny-sd');
const TOKEN = 'hf_CliTokenAbcdefghijklmnopqrstuvwx';

/** Runs `imagine-bot models …` in a child process (asynchronously: the fake Hub lives in this process). */
function runModels(args: string[], cwd: string, env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const driver = `
    import { Command } from ${JSON.stringify(import.meta.resolve('commander'))};
    import { registerModelsCommand } from ${JSON.stringify(join(ROOT, 'src/cli/models.ts'))};
    const program = new Command('imagine-bot').exitOverride();
    registerModelsCommand(program);
    try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (error) { console.error('error: ' + error.message); process.exitCode = 1; }
  `;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), '--input-type=module', '-e', driver, 'models', ...args], {
      cwd,
      env: { PATH: process.env['PATH'] ?? '', HOME: cwd, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('models pull and models list from the command line, with HF_ENDPOINT, HF_HOME and HF_TOKEN', async (t) => {
  const hub = await startFakeHub({ repo: 'test-org/tiny-sd', folder: FIXTURE, token: TOKEN });
  const dir = mkdtempSync(join(tmpdir(), 'imagine-models-cli-'));
  t.after(async () => {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { HF_ENDPOINT: hub.url, HF_HOME: join(dir, 'hf'), HF_TOKEN: TOKEN, IMAGINE_MODEL: 'test-org/tiny-sd' };
  const snapshot = join(dir, 'hf', 'hub', 'models--test-org--tiny-sd', 'snapshots', hub.commit);

  const before = await runModels(['list'], dir, env);
  assert.equal(before.status, 0, before.stderr);
  assert.match(before.stdout, /^No SD ONNX models in .*\/hf\/hub\. Get one with: imagine-bot models pull owner\/name\[@revision\]$/m);
  assert.match(before.stdout, /^Configured model \(IMAGINE_MODEL \/ model\.path\): test-org\/tiny-sd → Model test-org\/tiny-sd is not in the Hugging Face cache/m);

  const pull = await runModels(['pull', 'test-org/tiny-sd'], dir, env);
  assert.equal(pull.status, 0, pull.stderr);
  assert.match(pull.stdout, new RegExp(`^Pulled test-org/tiny-sd \\(commit ${hub.commit.slice(0, 12)}\\): 13 files, 14\\.4 MB; downloaded 14\\.4 MB\\.$`, 'm'));
  assert.ok(pull.stdout.includes(`  folder: ${snapshot}`));
  // Not a terminal: plain lines, no carriage returns.
  assert.match(pull.stderr, /^done \[13\/13\] vae_encoder\/model\.onnx 452\.3 kB$/m);
  assert.ok(!pull.stderr.includes('\r'));
  assert.ok(!`${pull.stdout}${pull.stderr}`.includes(TOKEN), 'the token is never printed');

  const after = await runModels(['list'], dir, env);
  assert.equal(after.status, 0, after.stderr);
  assert.ok(after.stdout.includes(`  test-org/tiny-sd@main  14.4 MB  ${snapshot}`), after.stdout);
  assert.ok(after.stdout.includes(`Configured model (IMAGINE_MODEL / model.path): test-org/tiny-sd → ${snapshot}`));

  const other = await runModels(['pull', 'test-org/tiny-sd', '--cache', join(dir, 'elsewhere')], dir, env);
  assert.equal(other.status, 0, other.stderr);
  assert.match(other.stderr, /into .*\/elsewhere/);

  const missing = await runModels(['pull', 'nobody/nothing'], dir, env);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^error: nobody\/nothing was not found on http:\/\/127\.0\.0\.1:\d+: check the name and that HF_TOKEN has access to it\.$/m);
  const invalid = await runModels(['pull', 'not a repo'], dir, env);
  assert.equal(invalid.status, 1);
  assert.match(invalid.stderr, /^error: "not a repo" is not a Hugging Face repo id/m);
});

test('on a terminal, progress is one redrawn bar', () => {
  let text = '';
  let clock = 0;
  const report = createProgressReporter({ isTTY: true, columns: 120, write: (s: string) => (text += s) }, () => clock);
  const base = { fileIndex: 0, fileCount: 2, totalBytes: 1000, fileSize: 800 };
  const events: PullProgress[] = [
    { ...base, kind: 'plan', path: '', fileBytes: 0, doneBytes: 0 },
    { ...base, kind: 'file', path: 'unet/weights.pb', fileBytes: 0, doneBytes: 0 },
    { ...base, kind: 'bytes', path: 'unet/weights.pb', fileBytes: 400, doneBytes: 400 },
  ];
  for (const event of events) {
    clock += 1000;
    report(event);
  }
  assert.match(text, /^2 files, 1.00 kB in all\n/);
  assert.ok(text.endsWith(`\r\x1b[2K${'█'.repeat(10)}${'░'.repeat(14)}  40% 400 B/1.00 kB [1/2] unet/weights.pb`), JSON.stringify(text));
  clock += 10; // too soon to redraw
  const length = text.length;
  report({ ...base, kind: 'bytes', path: 'unet/weights.pb', fileBytes: 500, doneBytes: 500 });
  assert.equal(text.length, length);
  report({ ...base, kind: 'done', path: 'unet/weights.pb', fileBytes: 800, doneBytes: 800 });
  assert.ok(text.endsWith('\r\x1b[2K✔ [1/2] unet/weights.pb 800 B\n'));
});
