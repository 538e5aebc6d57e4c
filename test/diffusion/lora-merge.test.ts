/**
 * LoRA merge at load (src/diffusion/lora/): the tiny kohya and PEFT/diffusers LoRAs merged into the tiny model's text
 * encoder and UNet, checked against scripts/make-lora-fixtures.py (test/fixtures/loras/expected.*): merged weights
 * computed in numpy from the same files, and the outputs of python-onnx's independently merged copies of the models
 * on fixed inputs (see test/fixtures/README.md for what is independent of what).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { loraModules, mergeLoras, readModelInitializer, readSafetensors, type LoraTarget, type LoraToMerge, type LoraWeights } from '../../src/diffusion/lora/index.js';
import { openSession } from '../../src/diffusion/providers.js';
import { TINY_MODEL } from '../helpers/reference.js';

const LORAS = join(TINY_MODEL, '..', 'loras');

interface Slice {
  offset: number;
  shape: number[];
}
interface ExpectedCase {
  id: string;
  loras: [string, number][];
  initializers: Record<string, Slice>;
  textEncoderOutput: Slice;
  unetOutput: Slice;
}
interface Expected {
  inputs: { offset: number; input_ids: number[]; timestep: number };
  cases: ExpectedCase[];
}
const expected = JSON.parse(readFileSync(join(LORAS, 'expected.json'), 'utf8')) as Expected;
const blob = readFileSync(join(LORAS, 'expected.f32'));
const floats = new Float32Array(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.byteLength));
const slice = ({ offset, shape }: Slice) => floats.subarray(offset, offset + shape.reduce((a, b) => a * b, 1));

/** max |a − b| / max |b|. */
function relativeError(actual: Float32Array, reference: Float32Array): number {
  assert.equal(actual.length, reference.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i]! - reference[i]!));
    scale = Math.max(scale, Math.abs(reference[i]!));
  }
  return diff / scale;
}

const weightsByName = new Map<string, LoraWeights>();
async function loraSet(entries: [string, number][]): Promise<LoraToMerge[]> {
  const set: LoraToMerge[] = [];
  for (const [name, multiplier] of entries) {
    let weights = weightsByName.get(name);
    if (!weights) weightsByName.set(name, (weights = loraModules(await readSafetensors(join(LORAS, `${name}.safetensors`)))));
    set.push({ name, weights, multiplier });
  }
  return set;
}

const PARTS: [string, LoraTarget][] = [
  ['text_encoder', 'text_encoder'],
  ['unet', 'unet'],
];

async function runParts(rewrite?: (target: LoraTarget) => (bytes: Uint8Array, folder: string) => Promise<Uint8Array>) {
  const inputs = floats.subarray(expected.inputs.offset);
  const te = await openSession(join(TINY_MODEL, 'text_encoder/model.onnx'), 'cpu', rewrite ? { modelRewrite: rewrite('text_encoder') } : {});
  const unet = await openSession(join(TINY_MODEL, 'unet/model.onnx'), 'cpu', rewrite ? { modelRewrite: rewrite('unet') } : {});
  try {
    const ids = Int32Array.from(expected.inputs.input_ids);
    const hidden = (await te.run({ input_ids: new ort.Tensor('int32', ids, [1, 77]) }))[te.outputNames[0]!]!.data as Float32Array;
    const out = (
      await unet.run({
        sample: new ort.Tensor('float32', inputs.slice(0, 256), [1, 4, 8, 8]),
        timestep: new ort.Tensor('float32', Float32Array.of(expected.inputs.timestep), [1]),
        encoder_hidden_states: new ort.Tensor('float32', inputs.slice(256, 256 + 77 * 32), [1, 77, 32]),
      })
    )[unet.outputNames[0]!]!.data as Float32Array;
    return { hidden, out };
  } finally {
    await te.release();
    await unet.release();
  }
}

test('the LoRA files parse into modules; the one key naming no module of the model is reported', async () => {
  const kohya = (await loraSet([['tiny-kohya', 1]]))[0]!;
  const peft = (await loraSet([['tiny-peft', 1]]))[0]!;
  assert.deepEqual(kohya.weights.unrecognizedKeys, []);
  assert.equal(kohya.weights.modules.filter((m) => m.target === 'unet').length, 11);
  assert.equal(kohya.weights.modules.filter((m) => m.target === 'text_encoder').length, 4);
  assert.equal(peft.weights.modules.filter((m) => m.target === 'unet').length, 4);
  assert.equal(peft.weights.modules.filter((m) => m.target === 'text_encoder').length, 1);
  const bytes = new Uint8Array(await readFile(join(TINY_MODEL, 'unet/model.onnx')));
  const result = await mergeLoras(bytes, join(TINY_MODEL, 'unet'), 'unet', [kohya]);
  assert.equal(result.mergedModules, 10);
  assert.deepEqual(
    result.unmatched.map((u) => u.module),
    ['down_blocks_9_attentions_0_transformer_blocks_0_attn1_to_q'],
  );
});

for (const testCase of expected.cases) {
  test(`${testCase.id}: merged weights match numpy within 1e-4 relative`, async () => {
    const set = await loraSet(testCase.loras);
    for (const [part, target] of PARTS) {
      const folder = join(TINY_MODEL, part);
      const base = new Uint8Array(await readFile(join(folder, 'model.onnx')));
      const { model } = await mergeLoras(base, folder, target, set);
      const names = Object.keys(testCase.initializers).filter((key) => key.startsWith(`${part}/`));
      assert.ok(names.length > 0, `${part}: the case touches it`);
      for (const key of names) {
        const name = key.slice(part.length + 1);
        const ours = await readModelInitializer(model, folder, name);
        assert.ok(ours, `${key} is in the merged model`);
        const reference = slice(testCase.initializers[key]!);
        const error = relativeError(ours, reference);
        assert.ok(error < 1e-4, `${key}: relative error ${error}`);
        // The LoRA really changed it: matching is not matching the base weight.
        const before = (await readModelInitializer(base, folder, name))!;
        assert.ok(relativeError(before, reference) > 1e-3, `${key}: the merge changes the weight`);
      }
    }
  });

  test(`${testCase.id}: merged text-encoder and UNet outputs match python-onnx's merged models within 1e-4 relative`, async () => {
    const set = await loraSet(testCase.loras);
    const merged = await runParts((target) => async (bytes, folder) => (await mergeLoras(bytes, folder, target, set)).model);
    const hiddenError = relativeError(merged.hidden, slice(testCase.textEncoderOutput));
    const unetError = relativeError(merged.out, slice(testCase.unetOutput));
    assert.ok(hiddenError < 1e-4, `text encoder: relative error ${hiddenError}`);
    assert.ok(unetError < 1e-4, `UNet: relative error ${unetError}`);
    const base = await runParts();
    assert.ok(relativeError(base.hidden, slice(testCase.textEncoderOutput)) > 1e-3, 'the LoRA changes the text encoder output');
    assert.ok(relativeError(base.out, slice(testCase.unetOutput)) > 1e-3, 'the LoRA changes the UNet output');
  });
}

test('multiplier 0 leaves the model bytes untouched', async () => {
  const set = await loraSet([['tiny-kohya', 0]]);
  const bytes = new Uint8Array(await readFile(join(TINY_MODEL, 'unet/model.onnx')));
  const result = await mergeLoras(bytes, join(TINY_MODEL, 'unet'), 'unet', set);
  assert.equal(result.model, bytes);
  assert.equal(result.mergedModules, 0);
});

test('a float16 UNet (variants/fp16) is merged in float16: its weights match numpy within float16 rounding', async () => {
  const testCase = expected.cases.find((entry) => entry.id === 'kohya-0.7')!;
  const folder = join(TINY_MODEL, '..', 'variants', 'fp16', 'unet');
  const base = new Uint8Array(await readFile(join(folder, 'model.onnx')));
  const { model, mergedModules } = await mergeLoras(base, folder, 'unet', await loraSet(testCase.loras));
  assert.equal(mergedModules, 10);
  for (const key of Object.keys(testCase.initializers).filter((name) => name.startsWith('unet/'))) {
    const name = key.slice('unet/'.length);
    const ours = await readModelInitializer(model, folder, name);
    assert.ok(ours, `${name} is in the fp16 model`);
    // float16 keeps 11 significant bits: about 5e-4 relative per value, on the base weight and on the result.
    const error = relativeError(ours, slice(testCase.initializers[key]!));
    assert.ok(error < 2e-3, `${name}: relative error ${error}`);
  }
});
