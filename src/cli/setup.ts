/**
 * `imagine-bot setup cuda`: installs onnxruntime-node's CUDA execution provider and checks that it loads.
 *
 * The CUDA provider's libraries are too big for the npm registry, so onnxruntime-node's own installer
 * (`node_modules/onnxruntime-node/script/install.js`) downloads them from NuGet (Microsoft.ML.OnnxRuntime.Gpu.Linux,
 * built for CUDA 12 and cuDNN 9) into `node_modules/onnxruntime-node/bin/napi-v6/linux/x64/`. A plain `npm install`
 * never runs it (it would fail offline and most users start on the CPU): package.json's `allowScripts` denies it on
 * npm 11 and 12, and on npm 10 the README's `ONNXRUNTIME_NODE_INSTALL=skip` does. This command runs the same installer
 * on request, overriding any skip.
 *
 * How the installer reads its flag (script/install-utils.js in 1.30): `ONNXRUNTIME_NODE_INSTALL` is read before
 * `npm_config_onnxruntime_node_install` (what an `.npmrc` or `--onnxruntime-node-install` skip becomes inside npm
 * scripts), so setting it overrides the skip. `cuda12` makes it install what linux/x64 requires (the cuda12 manifest) when files are missing; `true`
 * re-installs even when present (`--force`). With no explicit flag it also exits silently when it thinks it is part of
 * a local `npm install` (npm_config_local_prefix + npm_package_json), so those variables are removed for the child.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';

import { ImagineError } from '../errors.js';
import {
  ProviderUnavailableError,
  cudaProviderFiles,
  missingCudaProviderFiles,
  missingSharedLibraries,
  onnxruntimeBinaryFolder,
  resolveProvider,
} from '../diffusion/providers.js';

/** The CUDA set-up could not be completed; the message says why and what to do. */
export class SetupError extends ImagineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('setup_failed', message, options);
    this.name = 'SetupError';
  }
}

export interface CudaSetupOptions {
  /** Re-download even when the libraries are already there. */
  force?: boolean;
  /** Skip the check that the provider loads (e.g. when preparing an image on a machine without a GPU). */
  skipCheck?: boolean;
  /** GPU to check on (default 0). */
  deviceId?: number;
  log: (line: string) => void;
  /** The environment the installer runs with (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

export interface CudaSetupResult {
  /** Whether the installer ran (false when the files were already there). */
  installed: boolean;
  /** Whether the provider was checked and runs a kernel on the GPU. */
  verified: boolean;
}

function onnxruntimeNodeFolder(): string {
  return dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
}

const NETWORK_ERROR = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|CERT_|UNABLE_TO_VERIFY|self[- ]signed)\w*/;

/** The environment for onnxruntime-node's installer: our explicit flag, no npm-install context, proxy settings. */
export function installerEnvironment(base: NodeJS.ProcessEnv, force: boolean): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const key of Object.keys(env)) {
    const lower = key.toLowerCase();
    if (lower.startsWith('npm_config_onnxruntime_node_install') || lower === 'onnxruntime_node_install_cuda') delete env[key];
  }
  delete env.npm_config_local_prefix;
  delete env.npm_package_json;
  env.ONNXRUNTIME_NODE_INSTALL = force ? 'true' : 'cuda12';
  // The installer honours proxies through global-agent, which reads GLOBAL_AGENT_* variables only.
  const proxy = base.HTTPS_PROXY ?? base.https_proxy ?? base.HTTP_PROXY ?? base.http_proxy;
  if (proxy && !base.GLOBAL_AGENT_HTTPS_PROXY) env.GLOBAL_AGENT_HTTPS_PROXY = proxy;
  const noProxy = base.NO_PROXY ?? base.no_proxy;
  if (noProxy && !base.GLOBAL_AGENT_NO_PROXY) env.GLOBAL_AGENT_NO_PROXY = noProxy;
  return env;
}

function runInstaller(env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<{ code: number; stderr: string }> {
  const script = join(onnxruntimeNodeFolder(), 'script', 'install.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { env, cwd: onnxruntimeNodeFolder(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') log(`  ${line.trim()}`);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (pending.trim() !== '') log(`  ${pending.trim()}`);
      resolve({ code: code ?? 1, stderr });
    });
  });
}

/** One sentence for a failed installer run, from its stderr (an uncaught error with a stack trace). */
function describeInstallerFailure(stderr: string, folder: string): string {
  const network = NETWORK_ERROR.exec(stderr);
  if (network) {
    return (
      `could not download the CUDA provider from api.nuget.org (${network[0]}): this machine looks offline or behind a ` +
      `proxy (set HTTPS_PROXY). On an offline machine, copy ${cudaProviderFiles().join(' and ')} from the ` +
      `Microsoft.ML.OnnxRuntime.Gpu.Linux NuGet package (runtimes/linux-x64/native/) of the same version as ` +
      `onnxruntime-node into ${folder}`
    );
  }
  if (/\bEACCES\b|\bEPERM\b|\bEROFS\b/.test(stderr)) {
    return `cannot write the CUDA provider into ${folder}: run the set-up as the user who owns node_modules`;
  }
  if (/\bENOSPC\b/.test(stderr)) return 'not enough disk space to download the CUDA provider (it needs about 1 GB while unpacking)';
  const errorLine = stderr
    .split('\n')
    .map((line) => line.trim())
    .find((line) => /^(\w*Error|Error)\b/.test(line));
  return `onnxruntime-node's CUDA installer failed: ${errorLine ?? 'exit code without a message'}`;
}

/** Installs the CUDA provider when missing (or always with `force`), then checks that it runs a kernel on the GPU. */
export async function setupCuda(options: CudaSetupOptions): Promise<CudaSetupResult> {
  const { log } = options;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new SetupError(
      `onnxruntime-node has no CUDA provider for ${process.platform}/${process.arch} (only linux/x64): use --provider webgpu or cpu`,
    );
  }
  const folder = onnxruntimeBinaryFolder();
  let installed = false;
  const missingBefore = await missingCudaProviderFiles();
  if (missingBefore.length === 0 && !options.force) {
    log(`CUDA provider libraries already installed in ${folder}`);
  } else {
    log("downloading onnxruntime-node's CUDA 12 provider from NuGet (several hundred MB); this takes a while");
    const { code, stderr } = await runInstaller(installerEnvironment(options.env ?? process.env, options.force ?? false), log);
    if (code !== 0) throw new SetupError(describeInstallerFailure(stderr, folder), { cause: new Error(stderr.trim()) });
    const missingAfter = await missingCudaProviderFiles();
    if (missingAfter.length > 0) {
      throw new SetupError(`the CUDA installer finished but ${missingAfter.join(', ')} is still missing in ${folder}`, {
        cause: new Error(stderr.trim()),
      });
    }
    installed = true;
    log(`CUDA provider libraries installed in ${folder}`);
  }

  if (options.skipCheck) return { installed, verified: false };

  // The provider library links against CUDA 12, cuBLAS, cuFFT, cuRAND and cuDNN 9 found on the library path.
  const missingLibraries = await missingSharedLibraries(join(folder, cudaProviderFiles()[0]!));
  if (missingLibraries.length > 0) log(`libraries the CUDA provider needs but cannot find: ${missingLibraries.join(', ')}`);
  try {
    await resolveProvider('cuda', null, log, { deviceId: options.deviceId ?? 0 });
  } catch (error) {
    if (error instanceof ProviderUnavailableError) {
      throw new SetupError(`the CUDA provider is installed but does not run: ${error.message}`, { cause: error });
    }
    throw error;
  }
  log(`CUDA provider runs on GPU ${options.deviceId ?? 0}: start the bot with --provider cuda (or auto)`);
  return { installed, verified: true };
}

/** Adds `setup cuda` to the CLI. `log` defaults to stdout (tests pass their own). */
export function registerSetupCommand(
  program: Command,
  log: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
): void {
  const setup = program.command('setup').description('Install optional parts (GPU execution providers).');
  setup
    .command('cuda')
    .description(
      "Download onnxruntime-node's CUDA 12 execution provider (from NuGet; needs an NVIDIA driver, CUDA 12 and cuDNN 9) " +
        'and check that it runs.',
    )
    .option('--force', 'download again even if already installed')
    .option('--skip-check', 'do not check that the provider loads (e.g. when building an image without a GPU)')
    .option('--device <id>', 'GPU to check on', '0')
    .action(async (options: { force?: boolean; skipCheck?: boolean; device: string }) => {
      const deviceId = Number.parseInt(options.device, 10);
      if (!Number.isInteger(deviceId) || deviceId < 0) throw new SetupError(`--device must be a GPU index, got "${options.device}"`);
      await setupCuda({
        force: options.force ?? false,
        skipCheck: options.skipCheck ?? false,
        deviceId,
        log,
      });
    });
}
