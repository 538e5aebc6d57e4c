import { test } from 'node:test';
import assert from 'node:assert/strict';

import { identityModel } from '../../src/diffusion/onnx-builder.js';
import { openSession } from '../../src/diffusion/providers.js';
import { TensorFeeder, declaredShape, inputDtype, readFloats } from '../../src/diffusion/tensors.js';

test('feeders take the dtype the tiny UNet declares and reuse one tensor', async () => {
  const unet = await openSession('test/fixtures/tiny-sd/unet/model.onnx', 'cpu');
  try {
    assert.equal(inputDtype(unet, 'timestep'), 'float32');
    assert.deepEqual(declaredShape(unet, 'sample'), ['batch', 'channels', 'height', 'width']);
    const sample = TensorFeeder.forInput(unet, 'sample', [2, 4, 8, 8]);
    const timestep = TensorFeeder.forInput(unet, 'timestep', [2]);
    const hidden = TensorFeeder.forInput(unet, 'encoder_hidden_states', [2, 77, 32]);
    const first = sample.setFloats(new Float32Array(512).fill(0.25));
    assert.equal(sample.setFloats(new Float32Array(512).fill(0.5)), first, 'same tensor object every step');
    assert.equal((first.data as Float32Array)[0], 0.5);
    const out = await unet.run({
      sample: first,
      timestep: timestep.fill(500),
      encoder_hidden_states: hidden.setFloats(new Float32Array(2 * 77 * 32)),
    });
    assert.deepEqual(out.out_sample!.dims, [2, 4, 8, 8]);
    assert.throws(() => sample.setFloats(new Float32Array(10)), RangeError);
    assert.throws(() => TensorFeeder.forInput(unet, 'nope', [1]), /no input named nope/);
  } finally {
    await unet.release();
  }
});

test('float16 and int64 feeders go through a real ORT session unchanged', async () => {
  const half = await openSession(identityModel('float16'), 'cpu');
  const int64 = await openSession(identityModel('int64'), 'cpu');
  try {
    const feeder = TensorFeeder.forInput(half, 'x', [2, 3]);
    assert.equal(feeder.dtype, 'float16');
    const values = new Float32Array([1, -2, 0.5, 65504, 1e-7, 3.14159]);
    const out = (await half.run({ x: feeder.setFloats(values) })).y!;
    assert.equal(out.type, 'float16');
    // 1e-7 is 1.68 steps of the smallest subnormal (2^-24): it rounds to 2·2^-24.
    assert.deepEqual([...(out.data as Uint16Array)], [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0002, 0x4248]);
    assert.deepEqual([...readFloats(out, new Float32Array(6))], [1, -2, 0.5, 65504, 2 * 2 ** -24, 3.140625]);

    const ids = TensorFeeder.forInput(int64, 'x', [3]);
    assert.equal(ids.dtype, 'int64');
    const idsOut = (await int64.run({ x: ids.setInts([49406, 1929, 49407]) })).y!;
    assert.deepEqual([...(idsOut.data as BigInt64Array)], [49406n, 1929n, 49407n]);
    assert.deepEqual([...((await int64.run({ x: ids.fill(981.7) })).y!.data as BigInt64Array)], [981n, 981n, 981n]);
  } finally {
    await half.release();
    await int64.release();
  }
});
