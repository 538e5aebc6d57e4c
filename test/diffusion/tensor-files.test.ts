/**
 * tensor-files.ts: the restricted reader of torch.save files refuses what a saved tensor dict never contains, and the
 * safetensors reader refuses what is not a float tensor. (The files it must read are the embedding fixtures, checked
 * against torch.load in textual-inversion.test.ts.)
 */
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { test } from 'node:test';
import { readSafetensors, readTorchFile, TensorFileError } from '../../src/diffusion/tensor-files.js';

/** A zip with one stored entry, written by hand (the layout torch.save's writer uses, without alignment padding). */
function zipOf(name: string, data: Uint8Array, method: 0 | 8 = 0): Uint8Array {
  const stored = method === 8 ? new Uint8Array(deflateRawSync(data)) : data;
  const nameBytes = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(method, 8);
  local.writeUInt32LE(stored.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(nameBytes.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(method, 10);
  central.writeUInt32LE(stored.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(nameBytes.length, 28);
  central.writeUInt32LE(0, 42);
  const directoryOffset = local.length + nameBytes.length + stored.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + nameBytes.length, 12);
  end.writeUInt32LE(directoryOffset, 16);
  return Buffer.concat([local, nameBytes, stored, central, nameBytes, end]);
}

const pickle = (...bytes: (number | string)[]) => Buffer.concat(bytes.map((b) => (typeof b === 'number' ? Buffer.from([b]) : Buffer.from(b, 'latin1'))));

test('a pickle naming a callable other than the torch rebuild functions is refused before anything runs', () => {
  // GLOBAL builtins.eval, then the string, TUPLE1, REDUCE, STOP
  const evil = pickle(0x80, 2, 'cbuiltins\neval\n', 0x58, 4, 0, 0, 0, '1+1 ', 0x85, 0x52, 0x2e);
  assert.throws(() => readTorchFile(zipOf('x/data.pkl', evil)), (error: Error) => error instanceof TensorFileError && /builtins\.eval.*refused/.test(error.message));
});

test('an opcode a tensor dict never uses is refused (INST, which calls a class by name)', () => {
  const inst = pickle(0x80, 2, 0x28, 'iposix\nsystem\n', 0x2e);
  assert.throws(() => readTorchFile(zipOf('x/data.pkl', inst)), /opcode 0x69 .*refused/);
});

test('a deflated data.pkl holding plain values reads (dict, strings, ints, floats, lists)', () => {
  // {'name': 'x', 'step': 300, 'scale': 0.5, 'ids': [1, 2]}
  const value = pickle(
    0x80, 2, 0x7d, 0x28,
    0x58, 4, 0, 0, 0, 'name', 0x58, 1, 0, 0, 0, 'x',
    0x58, 4, 0, 0, 0, 'step', 0x4d, 0x2c, 0x01,
    0x58, 5, 0, 0, 0, 'scale', 0x47, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0,
    0x58, 3, 0, 0, 0, 'ids', 0x5d, 0x28, 0x4b, 1, 0x4b, 2, 0x65,
    0x75, 0x2e,
  );
  assert.deepEqual(readTorchFile(zipOf('archive/data.pkl', value, 8)), { name: 'x', step: 300, scale: 0.5, ids: [1, 2] });
});

test('not a zip: the legacy (pre-1.6) torch format is named in the error', () => {
  assert.throws(() => readTorchFile(new Uint8Array(100)), /not a zip file .*older ones are not supported/);
});

test('safetensors: an integer tensor or a byte range that does not match its shape is refused', () => {
  const file = (header: object, data: Uint8Array) => {
    const json = Buffer.from(JSON.stringify(header));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([length, json, data]);
  };
  assert.throws(() => readSafetensors(file({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8))), /dtype I64, not a float type/);
  assert.throws(() => readSafetensors(file({ v: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8))), /does not match its shape/);
  const half = readSafetensors(file({ v: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, Uint8Array.from([0x00, 0x3c, 0x00, 0xc0])));
  assert.deepEqual({ shape: half['v']!.shape, data: Array.from(half['v']!.data) }, { shape: [2], data: [1, -2] });
});
