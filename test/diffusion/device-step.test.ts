/**
 * The on-device CFG + scheduler step graph, run on the CPU provider (the same graph runs on WebGPU; no GPU here), checked
 * against an Euler step written out from its definition in diffusers (EulerDiscreteScheduler.step with ε-prediction:
 * x' = x + (σ_next − σ)·ε̂, ε̂ = ε_u + g(ε_c − ε_u); next UNet input x'/√(σ_next² + 1), twice for CFG).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';

import { DeviceStepper } from '../../src/diffusion/device-step.js';
import { halfBitsToNumber, numberToHalfBits } from '../../src/diffusion/fp16.js';
import { openSession } from '../../src/diffusion/providers.js';

const C = 4;
const H = 8;
const W = 8;
const PER_IMAGE = C * H * W;

function close(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

test('an Euler step with CFG on the real tiny UNet output matches the step written out in JS', async () => {
  const unet = await openSession('test/fixtures/tiny-sd/unet/model.onnx', 'cpu');
  const stepper = await DeviceStepper.open('cpu', 'float32');
  try {
    const latents = Float32Array.from({ length: PER_IMAGE }, (_, i) => Math.sin(i * 1.3) * 3);
    const sigma = 14.6;
    const sigmaNext = 11.2;
    const guidance = 7.5;
    const inputScale = 1 / Math.sqrt(sigma ** 2 + 1);
    const sample = new Float32Array(2 * PER_IMAGE);
    for (let i = 0; i < PER_IMAGE; i++) sample[i] = sample[PER_IMAGE + i] = latents[i]! * inputScale;
    const hidden = Float32Array.from({ length: 2 * 77 * 32 }, (_, i) => (i < 77 * 32 ? 0.1 : -0.2) * Math.cos(i));
    const out = await unet.run({
      sample: new ort.Tensor('float32', sample, [2, C, H, W]),
      timestep: new ort.Tensor('float32', new Float32Array([901, 901]), [2]),
      encoder_hidden_states: new ort.Tensor('float32', hidden, [2, 77, 32]),
    });
    const prediction = out.out_sample!;
    const eps = prediction.data as Float32Array;

    const result = await stepper.step(prediction, new ort.Tensor('float32', latents, [1, C, H, W]), {
      latents: 1,
      prediction: sigmaNext - sigma,
      guidance,
      nextInputScale: 1 / Math.sqrt(sigmaNext ** 2 + 1),
    });
    assert.deepEqual(result.latents.dims, [1, C, H, W]);
    assert.deepEqual(result.sample.dims, [2, C, H, W]);
    const next = result.latents.data as Float32Array;
    const nextSample = result.sample.data as Float32Array;
    for (let i = 0; i < PER_IMAGE; i++) {
      const guided = eps[i]! + guidance * (eps[PER_IMAGE + i]! - eps[i]!);
      const expected = latents[i]! + (sigmaNext - sigma) * guided;
      close(next[i]!, expected, 1e-5, `latents[${i}]`);
      const expectedInput = expected / Math.sqrt(sigmaNext ** 2 + 1);
      close(nextSample[i]!, expectedInput, 1e-5, `sample[${i}] (uncond half)`);
      close(nextSample[PER_IMAGE + i]!, expectedInput, 1e-5, `sample[${PER_IMAGE + i}] (cond half)`);
    }
  } finally {
    await unet.release();
    await stepper.release();
  }
});

test('fp16 UNets: the prediction is widened, latents stay float32, the next input is fp16; ancestral noise adds in', async () => {
  const stepper = await DeviceStepper.open('cpu', 'float16', { withNoise: true });
  try {
    const images = 2;
    const count = images * PER_IMAGE;
    const predictionValues = Float32Array.from({ length: 2 * count }, (_, i) => Math.cos(i * 0.37));
    const halves = Uint16Array.from(predictionValues, (v) => numberToHalfBits(v));
    const latents = Float32Array.from({ length: count }, (_, i) => Math.sin(i) * 2);
    const noise = Float32Array.from({ length: count }, (_, i) => ((i * 7919) % 13) / 13 - 0.5);
    const coefficients = { latents: 0.9, prediction: -0.3, guidance: 5, noise: 0.7, nextInputScale: 0.2 };
    const result = await stepper.step(
      new ort.Tensor('float16', halves, [2 * images, C, H, W]),
      new ort.Tensor('float32', latents, [images, C, H, W]),
      coefficients,
      new ort.Tensor('float32', noise, [images, C, H, W]),
    );
    assert.equal(result.latents.type, 'float32');
    assert.equal(result.sample.type, 'float16');
    assert.deepEqual(result.sample.dims, [2 * images, C, H, W]);
    const next = result.latents.data as Float32Array;
    const nextSample = result.sample.data as Uint16Array;
    for (let i = 0; i < count; i++) {
      // Batch layout: all unconditional images first, then all conditional ones.
      const uncond = halfBitsToNumber(halves[i]!);
      const cond = halfBitsToNumber(halves[count + i]!);
      const expected = 0.9 * latents[i]! - 0.3 * (uncond + 5 * (cond - uncond)) + 0.7 * noise[i]!;
      close(next[i]!, expected, 1e-5, `latents[${i}]`);
      for (const index of [i, count + i]) {
        // One half-precision ulp of slack: ORT and JS may round the float32 intermediate differently.
        close(halfBitsToNumber(nextSample[index]!), expected * 0.2, 2 ** -10, `sample[${index}]`);
      }
    }
    await assert.rejects(
      stepper.step(new ort.Tensor('float16', halves, [2 * images, C, H, W]), new ort.Tensor('float32', latents, [images, C, H, W]), coefficients),
      /pass the noise tensor/,
    );
  } finally {
    await stepper.release();
  }
});
