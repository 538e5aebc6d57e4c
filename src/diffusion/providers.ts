/**
 * Where ONNX Runtime runs the models: NVIDIA CUDA, WebGPU (Vulkan / Metal / D3D12), or the CPU.
 *
 * `resolveProvider('auto', …)` tries cuda, then webgpu, then cpu, and says in one log line per provider why it did not
 * get one; an explicit `cuda` or `webgpu` that cannot run fails with a `ProviderUnavailableError` whose message tells
 * the user what to do (for example "CUDA provider not installed: run `imagine-bot setup cuda`"). `openSession` opens
 * one model file on a provider with session options tuned for it.
 *
 * ## What onnxruntime-node 1.30 offers per provider (read from its typings, JS and native binding)
 * - `listSupportedBackends()` names the EPs compiled into the binding, with `bundled: false` for those whose libraries
 *   are not in the npm tarball. On linux/x64: cpu, webgpu (bundled), cuda and tensorrt (not bundled). The CUDA EP's
 *   `libonnxruntime_providers_cuda.so` and `libonnxruntime_providers_shared.so` are fetched from NuGet
 *   (Microsoft.ML.OnnxRuntime.Gpu.Linux, CUDA 12 + cuDNN 9 builds) into `bin/napi-v6/linux/x64/` by the package's
 *   `script/install.js` (see src/cli/setup.ts); without them, appending the EP fails with "Failed to load shared
 *   library".
 * - CUDA options the binding passes on: `deviceId` only. cuDNN's convolution algorithm search cannot be set from Node;
 *   ORT's default is already EXHAUSTIVE (benchmark once per shape, then cached), right for our fixed 512² shapes: the
 *   warm-up run pays for it once. CUDA outputs always come back to the CPU (no IO binding for CUDA in the Node API).
 * - WebGPU options: preferredLayout, validationMode, enableRobustness, forceCpuNodeNames and the four buffer cache
 *   modes (`webgpu` in OpenSessionOptions passes them through).
 *
 * ## Keeping UNet outputs on the GPU (WebGPU only)
 * `openSession(file, 'webgpu', { preferGpuOutputs: true })` sets `preferredOutputLocation: 'gpu-buffer'` (or a map
 * for only some outputs). In onnxruntime-node 1.30 (checked against the binding's strings and its source):
 * - Outputs then come back as `Tensor`s with `location === 'gpu-buffer'`, made by `Tensor.fromGpuBuffer`; their
 *   `gpuBuffer` is NOT a WebGPU GPUBuffer but an opaque N-API External holding ORT's OrtValue.
 * - Such a tensor can be fed straight back as an input of a session on the same WebGPU device (the binding binds it
 *   with IO binding: "Tensor.location must be 'gpu-buffer' for IO binding"). No copy.
 * - `tensor.getData()` / `.data` do NOT work on it: the binding's `download` callback throws "not implemented". To read
 *   it on the CPU, run it through a session whose outputs are on the CPU; `GpuTensorReader` below does that with an
 *   in-memory Identity model on the same provider.
 * - `tensor.dispose()` releases the GPU buffer. Dispose every GPU output once it is no longer needed (after the next
 *   step consumed it): the 1.30 binding gives the External no finalizer, so an undisposed output is only freed by
 *   `dispose()` (leaked otherwise).
 * - So a loop that keeps latents on the GPU needs the arithmetic between UNet calls (CFG combine, scheduler step) to run
 *   on the GPU too, i.e. as ONNX graphs on the WebGPU EP fed with the UNet's gpu-buffer output (device-step.ts'
 *   `DeviceStepper` does this for first-order schedulers; `GpuTensorUploader` below puts the text embeddings on the GPU
 *   once); the JS scheduler only works on CPU data. With the scheduler in JS, each step must read the UNet output back (GpuTensorReader or
 *   cpu outputs): the 2.2× gain measured on an H100 (73 vs 162 ms per step) was without that read-back.
 *   None of this could be run in this repository's CI: it has no GPU (see docs/gpu.md).
 *
 * ## Preallocated outputs (all providers)
 * `session.run(feeds, { out_sample: preallocatedTensor })` makes ORT write into the caller's buffer (checked on CPU
 * with 1.30); the tensor the call returns is a separate copy, so read the preallocated buffer.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { execFile } from 'node:child_process';
import * as ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';

import { pathExists } from '../util/fs.js';
import { ImagineError } from './errors.js';
import { identityModel, probeModel, type OnnxElementTypeName } from './onnx-builder.js';
import { ClipSkipRewriteError, exposeClipSkipOutputs } from './clip-skip.js';
import { exposeLatentParameters, VaeEncoderRewriteError } from './vae-encode.js';
import { fuseAttention } from './fuse-attention.js';
import { pinInputShapes } from './pin-shapes.js';

export type ProviderName = 'cuda' | 'webgpu' | 'cpu';
export type ProviderChoice = 'auto' | ProviderName;

/** The order `auto` tries them in: fastest first. */
export const AUTO_PROVIDER_ORDER: readonly ProviderName[] = ['cuda', 'webgpu', 'cpu'];
export const PROVIDER_CHOICES: readonly ProviderChoice[] = ['auto', 'cuda', 'webgpu', 'cpu'];

/** A provider name that is not one of ours (from config or `--provider`). */
export class InvalidProviderError extends ImagineError {
  constructor(text: string) {
    super('invalid_provider', `unknown execution provider "${text}": use one of ${PROVIDER_CHOICES.join(', ')}`);
    this.name = 'InvalidProviderError';
  }
}

/** An explicitly requested provider cannot run here. The message says why and what to do; `cause` has ORT's error. */
export class ProviderUnavailableError extends ImagineError {
  readonly provider: ProviderName;
  constructor(provider: ProviderName, message: string, options?: { cause?: unknown }) {
    super('provider_unavailable', message, options);
    this.name = 'ProviderUnavailableError';
    this.provider = provider;
  }
}

export function parseProviderChoice(text: string): ProviderChoice {
  const normalized = text.trim().toLowerCase();
  if ((PROVIDER_CHOICES as readonly string[]).includes(normalized)) return normalized as ProviderChoice;
  throw new InvalidProviderError(text);
}

export interface OpenSessionOptions {
  /** GPU index for CUDA (default 0). */
  deviceId?: number;
  /**
   * WebGPU only: leave outputs on the GPU (`true`: all outputs; a list: those outputs). Ignored on other providers,
   * whose outputs always come back to the CPU; check `keepsOutputsOnDevice(provider)`.
   */
  preferGpuOutputs?: boolean | readonly string[];
  /** Extra WebGPU EP options (preferredLayout, validationMode, …), e.g. for benchmarking variants. */
  webgpu?: Omit<InferenceSession.WebGpuExecutionProviderOption, 'name' | 'device'>;
  /** Overrides the CPU thread count (default: every CPU the process may use). */
  intraOpNumThreads?: number;
  /** ORT's own log level for this session (0 verbose … 4 fatal; default 2, warnings). */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * Fix these inputs' symbolic dimensions to exact sizes (ORT's freeDimensionOverrides, see pin-shapes.ts): the
   * session then takes only those shapes, and ORT can fold the graph's shape arithmetic away.
   */
  pinnedShapes?: Readonly<Record<string, readonly number[]>>;
  /**
   * Replace the export's attention blocks with ORT's fused MultiHeadAttention operator (fuse-attention.ts); a model
   * without such blocks opens as it is.
   */
  fuseAttention?: boolean;
  /**
   * Give a CLIP text encoder the outputs clip skip needs (clip-skip.ts); a graph the rewrite does not recognise opens
   * as it is, with a line to `log` (clip skip 2 then fails with a clear error).
   */
  clipSkipOutputs?: boolean;
  /**
   * Make a VAE encoder output its latent distribution's moments (`latent_parameters`, vae-encode.ts) instead of a
   * sample drawn with ORT's own randomness; a graph the rewrite does not recognise opens as it is, with a line to
   * `log` (img2img then fails with a clear error).
   */
  latentParameters?: boolean;
  /**
   * The caller's own load-time rewrite of the model's bytes (textual-inversion rows in the text encoder, see
   * textual-inversion.ts), applied after the rewrites above and before shape pinning.
   */
  edit?: (model: Uint8Array) => Uint8Array;
  /**
   * A rewrite of the model's bytes applied before every other one (e.g. LoRA weights merged in, lora/merge.ts), given
   * the folder of the model file, where its external weights are. Needs a model file path.
   */
  modelRewrite?: ModelRewrite;
  /** Where to say what a rewrite did (fuseAttention: how many blocks it fused). */
  log?: (line: string) => void;
}

/** Rewrites a serialized model before it is opened; `externalFolder` holds its external data files. */
export type ModelRewrite = (model: Uint8Array, externalFolder: string) => Promise<Uint8Array>;

/** Whether `preferGpuOutputs` has any effect on this provider. */
export function keepsOutputsOnDevice(provider: ProviderName): boolean {
  return provider === 'webgpu';
}

/** The session options `openSession` uses; exported so tests and benchmarks can show them. */
export function sessionOptionsFor(provider: ProviderName, options: OpenSessionOptions = {}): InferenceSession.SessionOptions {
  const base: InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    // Every CPU kernel (the whole model on cpu, and nodes a GPU provider leaves to the CPU) uses all cores; the
    // graph of an SD model is one long chain, so running independent nodes in parallel (inter-op) gains nothing.
    intraOpNumThreads: options.intraOpNumThreads ?? availableParallelism(),
    interOpNumThreads: 1,
    // ORT's warnings (e.g. "could not constant-fold a float16 Div on the CPU") are noise to a user; errors still
    // surface as exceptions. IMAGINE_DEBUG brings them back for diagnosis.
    logSeverityLevel: options.logSeverityLevel ?? (process.env['IMAGINE_DEBUG'] ? 2 : 3),
  };
  switch (provider) {
    case 'cpu':
      // Shapes repeat exactly from step to step, so the arena and memory pattern let ORT plan allocations once.
      return { ...base, executionProviders: ['cpu'], enableCpuMemArena: true, enableMemPattern: true };
    case 'cuda':
      return { ...base, executionProviders: [{ name: 'cuda', deviceId: options.deviceId ?? 0 }] };
    case 'webgpu': {
      const webgpu: InferenceSession.WebGpuExecutionProviderOption = { name: 'webgpu', ...(options.webgpu ?? {}) };
      const session: InferenceSession.SessionOptions = { ...base, executionProviders: [webgpu] };
      const wanted = options.preferGpuOutputs;
      if (wanted === true) session.preferredOutputLocation = 'gpu-buffer';
      else if (Array.isArray(wanted) && wanted.length > 0) {
        session.preferredOutputLocation = Object.fromEntries(wanted.map((name: string) => [name, 'gpu-buffer' as const]));
      }
      return session;
    }
  }
}

/**
 * Opens a model (a file path, or ONNX bytes) on a provider. External weight files (`weights.pb`, `model.onnx_data`)
 * are found beside a model file by ORT itself. A provider that cannot start becomes a `ProviderUnavailableError`;
 * any other failure (a broken model file) is ORT's own error, for the caller to wrap.
 */
export async function openSession(
  model: string | Uint8Array,
  provider: ProviderName,
  options: OpenSessionOptions = {},
): Promise<InferenceSession> {
  if (provider !== 'cpu') await checkProviderPrerequisites(provider);
  const sessionOptions = sessionOptionsFor(provider, options);
  let source: string | Uint8Array = model;
  if (options.pinnedShapes || options.fuseAttention || options.clipSkipOutputs || options.latentParameters || options.edit || options.modelRewrite) {
    let bytes: Uint8Array;
    if (typeof model === 'string') {
      // Rewritten bytes have no file path: ORT looks for external weights (weights.pb) in the folder this entry names.
      sessionOptions.extra = { session: { model_external_initializers_file_folder_path: dirname(model) } };
      bytes = new Uint8Array(await readFile(model));
      if (options.modelRewrite) bytes = await options.modelRewrite(bytes, dirname(model));
    } else if (options.modelRewrite) {
      throw new Error('openSession: modelRewrite needs the model file path (its external data folder)');
    } else bytes = model;
    if (options.fuseAttention) {
      const fusion = fuseAttention(bytes);
      bytes = fusion.model;
      if (fusion.fused > 0) {
        options.log?.(`${fusion.fused} attention block(s) fused into MultiHeadAttention (${fusion.nodesBefore} → ${fusion.nodesAfter} nodes)`);
      }
    }
    if (options.clipSkipOutputs) {
      try {
        bytes = exposeClipSkipOutputs(bytes).model;
      } catch (error) {
        if (!(error instanceof ClipSkipRewriteError)) throw error;
        options.log?.(`clip skip is unavailable for this model: ${error.message}`);
      }
    }
    if (options.latentParameters) {
      try {
        bytes = exposeLatentParameters(bytes);
      } catch (error) {
        if (!(error instanceof VaeEncoderRewriteError)) throw error;
        options.log?.(`img2img is unavailable for this model: ${error.message}`);
      }
    }
    if (options.edit) bytes = options.edit(bytes);
    source = options.pinnedShapes ? pinInputShapes(bytes, options.pinnedShapes) : bytes;
  }
  try {
    return typeof source === 'string'
      ? await ort.InferenceSession.create(source, sessionOptions)
      : await ort.InferenceSession.create(source, sessionOptions);
  } catch (error) {
    const reason = provider === 'cpu' ? null : await explainProviderFailure(provider, error);
    if (reason !== null) throw new ProviderUnavailableError(provider, reason, { cause: error });
    throw error;
  }
}

export interface ProviderAttempt {
  provider: ProviderName;
  ok: boolean;
  /** Why it failed, for a person; empty when ok. */
  reason: string;
}

/**
 * Picks the execution provider. `auto` tries cuda, webgpu, cpu in turn and logs one line per provider that failed
 * and one for the provider it got; an explicit provider that cannot run throws a `ProviderUnavailableError`.
 *
 * Each GPU provider is probed by opening a session on it and running one kernel: `probeModelFile` when given (e.g.
 * the model's text encoder, so an unsupported model is noticed too), else a tiny model built in memory (instant, so
 * no model file is read twice). cpu is not probed: it is always there.
 */
export async function resolveProvider(
  choice: ProviderChoice,
  probeModelFile: string | null | undefined,
  log: (line: string) => void,
  options: Pick<OpenSessionOptions, 'deviceId'> = {},
): Promise<{ provider: ProviderName; attempts: ProviderAttempt[] }> {
  const candidates = choice === 'auto' ? AUTO_PROVIDER_ORDER : [choice];
  const attempts: ProviderAttempt[] = [];
  for (const provider of candidates) {
    const failure = await probeProvider(provider, probeModelFile ?? undefined, options);
    if (failure === null) {
      attempts.push({ provider, ok: true, reason: '' });
      log(`execution provider: ${provider}${choice === 'auto' ? ' (auto)' : ''}`);
      return { provider, attempts };
    }
    attempts.push({ provider, ok: false, reason: failure.message });
    if (choice !== 'auto') throw failure;
    log(`execution provider ${provider} unavailable: ${failure.message}`);
  }
  // Unreachable in practice: cpu is last in the auto order and never fails its probe.
  throw new ProviderUnavailableError('cpu', 'no execution provider could be started');
}

/** Null when the provider runs; otherwise the error an explicit request for it should fail with. */
async function probeProvider(
  provider: ProviderName,
  probeModelFile: string | undefined,
  options: Pick<OpenSessionOptions, 'deviceId'>,
): Promise<ProviderUnavailableError | null> {
  if (provider === 'cpu') return null;
  let session: InferenceSession | undefined;
  try {
    // Quiet ORT's own console logging for the probe: failures are reported by us, in one line.
    session = await openSession(probeModelFile ?? probeModel(), provider, { ...options, logSeverityLevel: 3 });
    if (probeModelFile === undefined) {
      // Run one kernel: some failures (no device, driver mismatch) only show when work is submitted.
      await session.run({ x: new ort.Tensor('float32', new Float32Array([1, 2, 3, 4]), [4]) });
    }
    return null;
  } catch (error) {
    if (error instanceof ProviderUnavailableError) return error;
    // Not recognisably the provider's fault: maybe the probe file itself is broken. If the provider runs the
    // built-in probe, it is usable, and the model's problem will be reported when the model is loaded.
    if (probeModelFile !== undefined) return probeProvider(provider, undefined, options);
    const detail = firstLine(error);
    return new ProviderUnavailableError(
      provider,
      `${providerLabel(provider)} provider failed to start: ${detail}`,
      { cause: error },
    );
  } finally {
    await session?.release().catch(() => {});
  }
}

function providerLabel(provider: ProviderName): string {
  return provider === 'cuda' ? 'CUDA' : provider === 'webgpu' ? 'WebGPU' : 'CPU';
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split('\n').find((line) => line.trim() !== '') ?? text).trim();
}

// ---------------------------------------------------------------------------------------------------------------
// Detecting why a provider is missing

/** The folder holding onnxruntime-node's native binding and (once installed) the CUDA provider libraries. */
export function onnxruntimeBinaryFolder(): string {
  const require = createRequire(import.meta.url);
  const entry = require.resolve('onnxruntime-node'); // …/onnxruntime-node/dist/index.js
  return join(dirname(dirname(entry)), 'bin', 'napi-v6', process.platform, process.arch);
}

/** Library files the CUDA provider needs beside the binding (what onnxruntime-node's install script downloads). */
export function cudaProviderFiles(): string[] {
  if (process.platform === 'win32') return ['onnxruntime_providers_cuda.dll', 'onnxruntime_providers_shared.dll'];
  return ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];
}


/** The CUDA provider library files that are not installed (empty when all are there). */
export async function missingCudaProviderFiles(): Promise<string[]> {
  const folder = onnxruntimeBinaryFolder();
  const missing: string[] = [];
  for (const file of cudaProviderFiles()) if (!(await pathExists(join(folder, file)))) missing.push(file);
  return missing;
}

/** The setup command's hint, used wherever the CUDA provider is missing. */
export const CUDA_SETUP_HINT = 'run `imagine-bot setup cuda`';

/** Throws a ProviderUnavailableError when a provider certainly cannot load, before ORT prints its own errors. */
async function checkProviderPrerequisites(provider: Exclude<ProviderName, 'cpu'>): Promise<void> {
  const compiledIn = ort.listSupportedBackends().find((backend) => backend.name === provider);
  if (!compiledIn) {
    throw new ProviderUnavailableError(
      provider,
      `${providerLabel(provider)} provider is not available in onnxruntime-node on ${process.platform}/${process.arch}`,
    );
  }
  if (provider === 'cuda' && !compiledIn.bundled) {
    const missing = await missingCudaProviderFiles();
    if (missing.length > 0) {
      throw new ProviderUnavailableError(provider, `CUDA provider not installed: ${CUDA_SETUP_HINT}`, {
        cause: new Error(`missing in ${onnxruntimeBinaryFolder()}: ${missing.join(', ')}`),
      });
    }
  }
}

/**
 * Turns ORT's error when a provider fails to start into a sentence for the user, or null when the error is not about
 * the provider (e.g. a broken model file).
 */
async function explainProviderFailure(provider: Exclude<ProviderName, 'cpu'>, error: unknown): Promise<string | null> {
  const message = error instanceof Error ? error.message : String(error);
  if (provider === 'cuda') {
    if (/Failed to load (shared )?library|cannot open shared object|LoadLibrary failed|error while loading shared/i.test(message)) {
      const missing = await missingSharedLibraries(join(onnxruntimeBinaryFolder(), cudaProviderFiles()[0]!));
      const which = missing.length > 0 ? ` (missing: ${missing.join(', ')})` : '';
      return (
        `CUDA provider is installed but its CUDA libraries could not be loaded${which}: it needs an NVIDIA driver, ` +
        `CUDA 12 and cuDNN 9 runtime libraries on the library path`
      );
    }
    if (/no CUDA-capable device|cudaErrorNoDevice|CUDA driver version is insufficient|cudaErrorInsufficientDriver|CUDA failure 100|CUDA failure 35/i.test(message)) {
      return `CUDA provider found no usable NVIDIA GPU (${firstLine(error)})`;
    }
    if (/CUDA|cuDNN|cublas/i.test(message)) return `CUDA provider failed to start: ${firstLine(error)}`;
    return null;
  }
  if (/WebGPU adapter|No supported adapters|Couldn't load Vulkan|RequestAdapter|requestAdapter/i.test(message)) {
    const hint =
      process.platform === 'linux'
        ? ' (on Linux WebGPU needs the Vulkan loader libvulkan.so.1 and the GPU vendor’s Vulkan driver)'
        : '';
    return `WebGPU found no GPU adapter${hint}`;
  }
  if (/WebGPU|Dawn|webgpu/i.test(message)) return `WebGPU provider failed to start: ${firstLine(error)}`;
  return null;
}

/** Shared libraries `ldd` reports as "not found" for a file; empty when none or when ldd is unavailable. */
export function missingSharedLibraries(file: string): Promise<string[]> {
  if (process.platform !== 'linux') return Promise.resolve([]);
  return new Promise((resolve) => {
    execFile('ldd', [file], { timeout: 5000 }, (error, stdout) => {
      if (error && !stdout) {
        resolve([]);
        return;
      }
      const missing = stdout
        .split('\n')
        .filter((line) => line.includes('=> not found'))
        .map((line) => line.trim().split(/\s+/)[0]!)
        .filter((name) => name.length > 0);
      resolve([...new Set(missing)]);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Reading GPU-resident outputs back

/**
 * Copies tensors that live on the GPU (`location === 'gpu-buffer'`, from a WebGPU session opened with
 * `preferGpuOutputs`) to the CPU. onnxruntime-node 1.30 cannot `getData()` such tensors ("not implemented"), so this
 * feeds them through an in-memory Identity model on the same provider, whose output location is the CPU.
 * Tensors already on the CPU are returned as they are. One reader per pipeline; it opens one tiny session per dtype.
 *
 * Not exercised on a GPU in this repository's tests (no GPU in CI): see docs/gpu.md.
 */
export class GpuTensorReader {
  private readonly sessions = new Map<string, Promise<InferenceSession>>();

  constructor(private readonly provider: ProviderName) {}

  /** The tensor's data on the CPU (float16 as Uint16Array). Does not dispose the GPU tensor. */
  async read(tensor: ort.Tensor): Promise<ort.Tensor['data']> {
    if (tensor.location === 'cpu' || tensor.location === 'cpu-pinned') return tensor.data;
    const type = tensor.type as OnnxElementTypeName;
    let session = this.sessions.get(type);
    if (!session) {
      session = openSession(identityModel(type), this.provider);
      this.sessions.set(type, session);
    }
    const output = (await (await session).run({ x: tensor })).y;
    if (!output) throw new Error('identity session returned no output');
    return output.data;
  }

  async release(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const session of sessions) await (await session.catch(() => null))?.release();
  }
}

/**
 * Copies CPU tensors to the GPU once, so inputs that do not change between steps (the text embeddings) are not
 * uploaded again by every UNet call: runs them through an in-memory Identity model whose output stays on the GPU.
 * Only WebGPU can keep outputs on the device; elsewhere `upload` returns the tensor unchanged. Dispose what it returns
 * when done with it.
 */
export class GpuTensorUploader {
  private readonly sessions = new Map<string, Promise<InferenceSession>>();

  constructor(private readonly provider: ProviderName) {}

  async upload(tensor: ort.Tensor): Promise<ort.Tensor> {
    if (!keepsOutputsOnDevice(this.provider) || tensor.location === 'gpu-buffer') return tensor;
    const type = tensor.type as OnnxElementTypeName;
    let session = this.sessions.get(type);
    if (!session) {
      session = openSession(identityModel(type), this.provider, { preferGpuOutputs: true });
      this.sessions.set(type, session);
    }
    const output = (await (await session).run({ x: tensor })).y;
    if (!output) throw new Error('identity session returned no output');
    return output;
  }

  async release(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const session of sessions) await (await session.catch(() => null))?.release();
  }
}
