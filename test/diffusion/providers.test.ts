/**
 * Provider selection on a machine without a usable GPU (CI, and this project's development machines): onnxruntime-node
 * 1.30 is installed without running its install script, so the CUDA provider's libraries are absent, and there is no
 * WebGPU adapter. Tests that need those facts check them first and skip, with the reason, on a machine that has a GPU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';

import { ImagineError } from '../../src/diffusion/errors.js';
import {
  GpuTensorReader,
  GpuTensorUploader,
  InvalidProviderError,
  ProviderUnavailableError,
  missingCudaProviderFiles,
  openSession,
  parseProviderChoice,
  resolveProvider,
  sessionOptionsFor,
} from '../../src/diffusion/providers.js';

const TINY = 'test/fixtures/tiny-sd';

const cudaMissing = (await missingCudaProviderFiles()).length > 0;
const noCudaReason = cudaMissing ? false : 'the CUDA provider libraries are installed on this machine';

async function webgpuUsable(): Promise<boolean> {
  try {
    const session = await openSession(`${TINY}/vae_decoder/model.onnx`, 'webgpu', { logSeverityLevel: 4 });
    await session.release();
    return true;
  } catch {
    return false;
  }
}
const noGpuReason = cudaMissing && !(await webgpuUsable()) ? false : 'this machine has a usable GPU provider';

test('parseProviderChoice accepts the four choices and rejects others with one line', () => {
  assert.equal(parseProviderChoice('auto'), 'auto');
  assert.equal(parseProviderChoice(' CUDA '), 'cuda');
  assert.equal(parseProviderChoice('webgpu'), 'webgpu');
  assert.equal(parseProviderChoice('cpu'), 'cpu');
  assert.throws(
    () => parseProviderChoice('tensorrt'),
    (error: unknown) =>
      error instanceof InvalidProviderError &&
      error instanceof ImagineError &&
      error.message === 'unknown execution provider "tensorrt": use one of auto, cuda, webgpu, cpu',
  );
});

test('auto falls back to cpu and logs why cuda and webgpu were not used', { skip: noGpuReason }, async () => {
  const lines: string[] = [];
  const { provider, attempts } = await resolveProvider('auto', undefined, (line) => lines.push(line));
  assert.equal(provider, 'cpu');
  assert.deepEqual(
    attempts.map((a) => [a.provider, a.ok]),
    [
      ['cuda', false],
      ['webgpu', false],
      ['cpu', true],
    ],
  );
  assert.deepEqual(lines, [
    'execution provider cuda unavailable: CUDA provider not installed: run `imagine-bot setup cuda`',
    `execution provider webgpu unavailable: ${attempts[1]!.reason}`,
    'execution provider: cpu (auto)',
  ]);
  assert.match(attempts[1]!.reason, /^WebGPU /);
  assert.doesNotMatch(attempts[1]!.reason, /\n/);
});

test('auto with the text encoder as probe file also ends on cpu', { skip: noGpuReason }, async () => {
  const lines: string[] = [];
  const { provider } = await resolveProvider('auto', `${TINY}/text_encoder/model.onnx`, (line) => lines.push(line));
  assert.equal(provider, 'cpu');
  assert.equal(lines.at(-1), 'execution provider: cpu (auto)');
});

test('an explicit cuda without its libraries fails with the setup command in the message', { skip: noCudaReason }, async () => {
  const lines: string[] = [];
  await assert.rejects(
    resolveProvider('cuda', `${TINY}/text_encoder/model.onnx`, (line) => lines.push(line)),
    (error: unknown) => {
      assert.ok(error instanceof ProviderUnavailableError);
      assert.ok(error instanceof ImagineError);
      assert.equal(error.code, 'provider_unavailable');
      assert.equal(error.provider, 'cuda');
      assert.equal(error.message, 'CUDA provider not installed: run `imagine-bot setup cuda`');
      // The internal detail (which files, where) is in the cause, not in the user's message.
      assert.match(String((error.cause as Error).message), /libonnxruntime_providers_cuda\.so/);
      return true;
    },
  );
  assert.deepEqual(lines, []);
  // openSession refuses the same way, before ORT tries to load anything.
  await assert.rejects(openSession(`${TINY}/vae_decoder/model.onnx`, 'cuda'), ProviderUnavailableError);
});

test('an explicit webgpu without an adapter fails with a typed one-line error', { skip: noGpuReason }, async () => {
  await assert.rejects(resolveProvider('webgpu', undefined, () => {}), (error: unknown) => {
    assert.ok(error instanceof ProviderUnavailableError);
    assert.equal(error.provider, 'webgpu');
    assert.match(error.message, /^WebGPU found no GPU adapter/);
    assert.doesNotMatch(error.message, /\n/);
    assert.ok(error.cause instanceof Error);
    return true;
  });
});

test('explicit cpu resolves without probing', async () => {
  const lines: string[] = [];
  const result = await resolveProvider('cpu', '/nonexistent/model.onnx', (line) => lines.push(line));
  assert.deepEqual(result, { provider: 'cpu', attempts: [{ provider: 'cpu', ok: true, reason: '' }] });
  assert.deepEqual(lines, ['execution provider: cpu']);
});

test('session options are tuned per provider', () => {
  const cpu = sessionOptionsFor('cpu');
  assert.equal(cpu.graphOptimizationLevel, 'all');
  assert.equal(cpu.intraOpNumThreads, availableParallelism());
  assert.equal(cpu.interOpNumThreads, 1);
  assert.deepEqual(cpu.executionProviders, ['cpu']);
  assert.equal(cpu.enableMemPattern, true);
  assert.equal(cpu.preferredOutputLocation, undefined);

  assert.deepEqual(sessionOptionsFor('cuda', { deviceId: 1 }).executionProviders, [{ name: 'cuda', deviceId: 1 }]);
  assert.deepEqual(sessionOptionsFor('cuda').executionProviders, [{ name: 'cuda', deviceId: 0 }]);
  // CUDA outputs cannot stay on the device in onnxruntime-node: the option is ignored there.
  assert.equal(sessionOptionsFor('cuda', { preferGpuOutputs: true }).preferredOutputLocation, undefined);

  const webgpu = sessionOptionsFor('webgpu', { preferGpuOutputs: true, webgpu: { preferredLayout: 'NHWC' } });
  assert.deepEqual(webgpu.executionProviders, [{ name: 'webgpu', preferredLayout: 'NHWC' }]);
  assert.equal(webgpu.preferredOutputLocation, 'gpu-buffer');
  assert.deepEqual(sessionOptionsFor('webgpu', { preferGpuOutputs: ['out_sample'] }).preferredOutputLocation, {
    out_sample: 'gpu-buffer',
  });
});

test('a cpu session opens the tiny model and its input dtypes come from metadata', async () => {
  const unet = await openSession(`${TINY}/unet/model.onnx`, 'cpu'); // external weights (weights.pb) beside it
  const encoder = await openSession(`${TINY}/text_encoder/model.onnx`, 'cpu');
  try {
    const unetInputs = Object.fromEntries(
      unet.inputNames.map((name, index) => {
        const meta = unet.inputMetadata[index]!;
        return [name, meta.isTensor ? meta.type : 'not a tensor'];
      }),
    );
    // What the fixture's README documents for diffusers' exporter: a float32 timestep, float32 latents.
    assert.deepEqual(unetInputs, { sample: 'float32', timestep: 'float32', encoder_hidden_states: 'float32' });
    const ids = encoder.inputMetadata[encoder.inputNames.indexOf('input_ids')]!;
    assert.ok(ids.isTensor);
    assert.equal(ids.type, 'int32');

    // And it runs: a batch of two 8×8 latents through the UNet.
    const out = await unet.run({
      sample: new ort.Tensor('float32', new Float32Array(2 * 4 * 8 * 8).fill(0.5), [2, 4, 8, 8]),
      timestep: new ort.Tensor('float32', new Float32Array([981, 981]), [2]),
      encoder_hidden_states: new ort.Tensor('float32', new Float32Array(2 * 77 * 32).fill(0.1), [2, 77, 32]),
    });
    assert.deepEqual(out.out_sample!.dims, [2, 4, 8, 8]);
  } finally {
    await unet.release();
    await encoder.release();
  }
});

test('a broken model file is not mistaken for a provider problem', async () => {
  await assert.rejects(openSession(Uint8Array.from([1, 2, 3]), 'cpu'), (error: unknown) => {
    assert.ok(!(error instanceof ImagineError));
    return true;
  });
});

test('GpuTensorReader returns CPU tensors as they are', async () => {
  const reader = new GpuTensorReader('cpu');
  try {
    const data = new Float32Array([1, 2, 3]);
    assert.equal(await reader.read(new ort.Tensor('float32', data, [3])), data);
  } finally {
    await reader.release();
  }
});

test('GpuTensorUploader leaves tensors alone where outputs cannot stay on a GPU', async () => {
  const uploader = new GpuTensorUploader('cpu');
  try {
    const tensor = new ort.Tensor('float32', new Float32Array([1, 2]), [2]);
    assert.equal(await uploader.upload(tensor), tensor);
  } finally {
    await uploader.release();
  }
});
