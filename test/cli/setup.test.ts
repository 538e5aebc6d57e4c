/**
 * `imagine-bot setup cuda` on a machine that cannot reach NuGet (CI and development machines here only reach the npm
 * registry). The end-to-end tests run onnxruntime-node's real installer; they skip when api.nuget.org resolves, so a
 * test run never downloads hundreds of MB into a shared node_modules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { Command } from 'commander';

import { ImagineError } from '../../src/errors.js';
import { missingCudaProviderFiles } from '../../src/diffusion/providers.js';
import { SetupError, installerEnvironment, registerSetupCommand, setupCuda } from '../../src/cli/setup.js';

const nugetReachable = await lookup('api.nuget.org').then(
  () => true,
  () => false,
);
const cudaMissing = (await missingCudaProviderFiles()).length > 0;
const offlineSkip =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? 'CUDA set-up exists only on linux/x64'
    : nugetReachable
      ? 'api.nuget.org resolves here: the installer would really download'
      : !cudaMissing
        ? 'the CUDA provider is already installed here'
        : false;

test('the installer environment overrides .npmrc’s skip and drops the npm-install context', () => {
  const env = installerEnvironment(
    {
      PATH: '/usr/bin',
      npm_config_onnxruntime_node_install: 'skip',
      npm_config_onnxruntime_node_install_cuda: 'skip',
      npm_config_local_prefix: '/app',
      npm_package_json: '/app/package.json',
      HTTPS_PROXY: 'http://proxy:3128',
    },
    false,
  );
  assert.deepEqual(env, {
    PATH: '/usr/bin',
    ONNXRUNTIME_NODE_INSTALL: 'cuda12',
    GLOBAL_AGENT_HTTPS_PROXY: 'http://proxy:3128',
    HTTPS_PROXY: 'http://proxy:3128',
  });
  assert.equal(installerEnvironment({}, true).ONNXRUNTIME_NODE_INSTALL, 'true');
});

test('offline, setup cuda runs the real installer (despite the skip) and explains the network failure', { skip: offlineSkip }, async () => {
  const lines: string[] = [];
  await assert.rejects(
    // As if run through `npm exec`, where .npmrc's skip arrives as an npm_config_ variable.
    setupCuda({
      log: (line) => lines.push(line),
      env: { ...process.env, npm_config_onnxruntime_node_install: 'skip', npm_config_local_prefix: process.cwd(), npm_package_json: `${process.cwd()}/package.json` },
    }),
    (error: unknown) => {
      assert.ok(error instanceof SetupError);
      assert.ok(error instanceof ImagineError);
      assert.equal(error.code, 'setup_failed');
      // Had the skip won, the installer would have exited 0 and we would report missing files instead.
      assert.match(error.message, /^could not download the CUDA provider from api\.nuget\.org \((ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT)/);
      assert.match(error.message, /libonnxruntime_providers_cuda\.so/);
      assert.doesNotMatch(error.message, /\n/);
      assert.match(String((error.cause as Error).message), /api\.nuget\.org/);
      return true;
    },
  );
  assert.match(lines[0]!, /^downloading onnxruntime-node's CUDA 12 provider/);
  assert.deepEqual(await missingCudaProviderFiles(), ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so']);
});

test('the CLI command is registered as `setup cuda` and fails with the same one-line error', { skip: offlineSkip }, async () => {
  const program = new Command('imagine-bot').exitOverride();
  const printed: string[] = [];
  registerSetupCommand(program, (line) => printed.push(line));
  const setup = program.commands.find((command) => command.name() === 'setup');
  assert.ok(setup?.commands.some((command) => command.name() === 'cuda'));
  await assert.rejects(program.parseAsync(['node', 'imagine-bot', 'setup', 'cuda']), SetupError);
  assert.match(printed.join(''), /downloading onnxruntime-node's CUDA 12 provider/);
});
