/**
 * Reading the tensors of weight files people download (textual-inversion embeddings): `.safetensors`, and PyTorch's
 * `torch.save` files (`.pt`, `.bin`) — a zip holding `data.pkl` (a pickle of the saved object) and one raw file per
 * storage. A pickle is a program for a stack machine that may import and call anything, so it is never run: a small
 * reader interprets only the opcodes a saved dict of tensors uses and builds tensors from the few callables that
 * `torch.save` writes (allow-listed by name below); any other global is refused, so a malicious file fails to read
 * instead of executing code.
 */
import { inflateRawSync } from 'node:zlib';
import { halfBitsToNumber } from './fp16.js';

export class TensorFileError extends Error {
  override name = 'TensorFileError';
}

/** A tensor read from a file, converted to float32 (the dtypes embeddings come in: float32, float16, bfloat16, float64). */
export interface FileTensor {
  shape: number[];
  data: Float32Array;
}

/** What a weight file held: nested dicts and lists of tensors, numbers, strings (the pickle's own structure). */
export type FileValue = FileTensor | string | number | boolean | null | FileValue[] | { [key: string]: FileValue };

export function isFileTensor(value: FileValue | undefined): value is FileTensor {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && (value as { data?: unknown }).data instanceof Float32Array;
}

// --- element types -------------------------------------------------------------------------------------------------

type ElementType = 'float32' | 'float16' | 'bfloat16' | 'float64';
const ELEMENT_BYTES: Record<ElementType, number> = { float32: 4, float16: 2, bfloat16: 2, float64: 8 };

/** `count` little-endian elements of `type` starting at byte `offset` of `bytes`, as float32. */
function toFloat32(bytes: Uint8Array, offset: number, count: number, type: ElementType): Float32Array {
  const end = offset + count * ELEMENT_BYTES[type];
  if (offset < 0 || end > bytes.length) throw new TensorFileError('tensor data runs past the end of the file');
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, end - offset);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    switch (type) {
      case 'float32':
        out[i] = view.getFloat32(i * 4, true);
        break;
      case 'float64':
        out[i] = view.getFloat64(i * 8, true);
        break;
      case 'float16':
        out[i] = halfBitsToNumber(view.getUint16(i * 2, true));
        break;
      case 'bfloat16': {
        // bfloat16 is the top half of a float32.
        const bits = new Uint32Array([view.getUint16(i * 2, true) << 16]);
        out[i] = new Float32Array(bits.buffer)[0]!;
        break;
      }
    }
  }
  return out;
}

// --- safetensors ---------------------------------------------------------------------------------------------------

const SAFETENSORS_TYPES: Record<string, ElementType> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64' };

/**
 * A `.safetensors` file: an 8-byte little-endian header length, a JSON header mapping each tensor's name to its dtype,
 * shape and byte range in the data that follows, then the data. `__metadata__` (string pairs) is skipped.
 */
export function readSafetensors(bytes: Uint8Array): Record<string, FileTensor> {
  if (bytes.length < 8) throw new TensorFileError('too short for a safetensors file');
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > bytes.length - 8) throw new TensorFileError('safetensors header length exceeds the file');
  let header: Record<string, { dtype?: string; shape?: number[]; data_offsets?: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as typeof header;
  } catch {
    throw new TensorFileError('safetensors header is not JSON');
  }
  const dataStart = 8 + headerLength;
  const tensors: Record<string, FileTensor> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const type = SAFETENSORS_TYPES[entry.dtype ?? ''];
    if (type === undefined) throw new TensorFileError(`tensor ${name} has dtype ${entry.dtype}, not a float type`);
    const shape = entry.shape ?? [];
    const [begin, end] = entry.data_offsets ?? [0, 0];
    const count = shape.reduce((product, size) => product * size, 1);
    if (end - begin !== count * ELEMENT_BYTES[type]) throw new TensorFileError(`tensor ${name}: its byte range does not match its shape`);
    tensors[name] = { shape, data: toFloat32(bytes, dataStart + begin, count, type) };
  }
  return tensors;
}

// --- zip (torch.save's container) ----------------------------------------------------------------------------------

/** The entries of a zip file by name (stored or deflated), read from its central directory. */
function readZip(bytes: Uint8Array): Map<string, Uint8Array> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The end-of-central-directory record is in the last 64 KiB + 22 bytes (its comment is at most 64 KiB).
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65557); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new TensorFileError('not a zip file (torch.save files from PyTorch ≥ 1.6 are zips; older ones are not supported)');
  let entryCount = view.getUint16(eocd + 10, true);
  let directory = view.getUint32(eocd + 16, true);
  // ZIP64 (torch writes it for large files): the zip64 end record holds the real values.
  if (directory === 0xffffffff || entryCount === 0xffff) {
    const locator = eocd - 20;
    if (locator < 0 || view.getUint32(locator, true) !== 0x07064b50) throw new TensorFileError('zip64 locator missing');
    const record = Number(view.getBigUint64(locator + 8, true));
    entryCount = Number(view.getBigUint64(record + 32, true));
    directory = Number(view.getBigUint64(record + 48, true));
  }
  const entries = new Map<string, Uint8Array>();
  let position = directory;
  for (let n = 0; n < entryCount; n++) {
    if (view.getUint32(position, true) !== 0x02014b50) throw new TensorFileError('broken zip central directory');
    const method = view.getUint16(position + 10, true);
    let compressedSize = view.getUint32(position + 20, true);
    const nameLength = view.getUint16(position + 28, true);
    const extraLength = view.getUint16(position + 30, true);
    const commentLength = view.getUint16(position + 32, true);
    let localHeader = view.getUint32(position + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(position + 46, position + 46 + nameLength));
    // Zip64 extra field (id 1): the 64-bit sizes/offset, in order, for those fields that read 0xffffffff.
    let extra = position + 46 + nameLength;
    const extraEnd = extra + extraLength;
    while (extra + 4 <= extraEnd) {
      const id = view.getUint16(extra, true);
      const size = view.getUint16(extra + 2, true);
      if (id === 1) {
        let field = extra + 4;
        if (view.getUint32(position + 24, true) === 0xffffffff) field += 8; // uncompressed size
        if (compressedSize === 0xffffffff) {
          compressedSize = Number(view.getBigUint64(field, true));
          field += 8;
        }
        if (localHeader === 0xffffffff) localHeader = Number(view.getBigUint64(field, true));
      }
      extra += 4 + size;
    }
    if (view.getUint32(localHeader, true) !== 0x04034b50) throw new TensorFileError(`broken zip entry ${name}`);
    const dataStart = localHeader + 30 + view.getUint16(localHeader + 26, true) + view.getUint16(localHeader + 28, true);
    const raw = bytes.subarray(dataStart, dataStart + compressedSize);
    if (method === 0) entries.set(name, raw);
    else if (method === 8) entries.set(name, new Uint8Array(inflateRawSync(raw)));
    else throw new TensorFileError(`zip entry ${name} uses compression method ${method}`);
    position += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

// --- the restricted unpickler --------------------------------------------------------------------------------------

/** Storage classes torch.save names (`torch.FloatStorage`, …) and their element types. */
const STORAGE_TYPES: Record<string, ElementType> = {
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  DoubleStorage: 'float64',
};

function isPlainDict(value: StackValue): value is { [key: string]: FileValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof PickleGlobal) && !(value instanceof Storage) && !isFileTensor(value as FileValue);
}

/** Values on the pickle machine's stack that are not file values: the allow-listed callables and persistent storages. */
class PickleGlobal {
  constructor(readonly name: string) {}
}
class Storage {
  constructor(
    readonly type: ElementType,
    readonly key: string,
  ) {}
}
const MARK = Symbol('mark');
type StackValue = FileValue | PickleGlobal | Storage | typeof MARK | StackValue[];

/**
 * The callables a saved dict of tensors may name; anything else is refused. `ParameterDict` (and the `set` in its
 * state) is how the original textual-inversion code saved `string_to_param`; it becomes a plain dict of its state.
 */
const ALLOWED_GLOBALS = new Set([
  'collections OrderedDict',
  'torch._utils _rebuild_tensor_v2',
  'torch._utils _rebuild_parameter',
  'torch.nn.modules.container ParameterDict',
  '__builtin__ set',
  'builtins set',
  ...Object.keys(STORAGE_TYPES).map((name) => `torch ${name}`),
]);

/**
 * Interprets `data.pkl` of a torch.save zip, allowing only the opcodes of pickle protocols 2–4 that a dict of tensors
 * (with string/number metadata) is written with, and only the globals in ALLOWED_GLOBALS.
 */
function unpickle(pickle: Uint8Array, loadStorage: (storage: Storage) => Uint8Array): FileValue {
  const view = new DataView(pickle.buffer, pickle.byteOffset, pickle.byteLength);
  const stack: StackValue[] = [];
  const memo = new Map<number, StackValue>();
  let position = 0;
  const text = (start: number, length: number): string => {
    if (start + length > pickle.length) throw new TensorFileError('truncated pickle');
    return new TextDecoder().decode(pickle.subarray(start, start + length));
  };
  const pop = (): StackValue => {
    if (stack.length === 0) throw new TensorFileError('pickle stack underflow');
    return stack.pop()!;
  };
  const popToMark = (): StackValue[] => {
    const mark = stack.lastIndexOf(MARK);
    if (mark < 0) throw new TensorFileError('pickle MARK missing');
    const items = stack.splice(mark);
    items.shift();
    return items;
  };
  const top = (): StackValue => {
    const value = stack[stack.length - 1];
    if (value === undefined) throw new TensorFileError('pickle stack underflow');
    return value;
  };
  const setItems = (target: StackValue, items: StackValue[]): void => {
    if (typeof target !== 'object' || target === null || Array.isArray(target) || target instanceof PickleGlobal || target instanceof Storage) {
      throw new TensorFileError('pickle SETITEM on something that is not a dict');
    }
    for (let i = 0; i + 1 < items.length; i += 2) {
      const key = items[i];
      if (typeof key !== 'string' && typeof key !== 'number') throw new TensorFileError('pickle dict key is not a string or number');
      (target as Record<string, FileValue>)[String(key)] = items[i + 1] as FileValue;
    }
  };
  const call = (callable: StackValue, args: StackValue): StackValue => {
    if (!(callable instanceof PickleGlobal) || !Array.isArray(args)) throw new TensorFileError('pickle REDUCE on a value that is not an allowed callable');
    switch (callable.name) {
      case 'collections OrderedDict':
        return {};
      case '__builtin__ set':
      case 'builtins set':
        return Array.isArray(args[0]) ? [...(args[0] as StackValue[])] : [];
      case 'torch._utils _rebuild_parameter':
        return args[0] as StackValue; // (data, requires_grad, backward_hooks): the data is the tensor
      case 'torch._utils _rebuild_tensor_v2': {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof Storage) || typeof offset !== 'number' || !Array.isArray(size) || !Array.isArray(stride)) {
          throw new TensorFileError('unexpected arguments to _rebuild_tensor_v2');
        }
        const shape = size.map(Number);
        const strides = stride.map(Number);
        const count = shape.reduce((product, dim) => product * dim, 1);
        // Contiguous (C-order) tensors only: what torch.save writes for a parameter or a fresh tensor.
        let expected = 1;
        for (let axis = shape.length - 1; axis >= 0; axis--) {
          if (shape[axis]! > 1 && strides[axis] !== expected) throw new TensorFileError('a saved tensor is not contiguous');
          expected *= shape[axis]!;
        }
        const data = toFloat32(loadStorage(storage), offset * ELEMENT_BYTES[storage.type], count, storage.type);
        return { shape, data };
      }
      default:
        throw new TensorFileError(`pickle calls ${callable.name}, which is not allowed`);
    }
  };

  for (;;) {
    const opcode = pickle[position++];
    if (opcode === undefined) throw new TensorFileError('pickle ends without STOP');
    switch (opcode) {
      case 0x80: // PROTO
        position++;
        break;
      case 0x95: // FRAME (protocol 4): an 8-byte length, framing only
        position += 8;
        break;
      case 0x2e: // STOP
        return pop() as FileValue;
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push({});
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(view.getUint8(position));
        position += 1;
        break;
      case 0x4d: // BININT2
        stack.push(view.getUint16(position, true));
        position += 2;
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(position, true));
        position += 4;
        break;
      case 0x8a: {
        // LONG1: a little-endian two's-complement integer of n bytes
        const length = view.getUint8(position);
        let value = 0n;
        for (let i = length - 1; i >= 0; i--) value = (value << 8n) | BigInt(view.getUint8(position + 1 + i));
        if (length > 0 && (view.getUint8(position + length) & 0x80) !== 0) value -= 1n << BigInt(8 * length);
        stack.push(Number(value));
        position += 1 + length;
        break;
      }
      case 0x47: // BINFLOAT: big-endian double
        stack.push(view.getFloat64(position, false));
        position += 8;
        break;
      case 0x58: {
        // BINUNICODE
        const length = view.getUint32(position, true);
        stack.push(text(position + 4, length));
        position += 4 + length;
        break;
      }
      case 0x8c: {
        // SHORT_BINUNICODE
        const length = view.getUint8(position);
        stack.push(text(position + 1, length));
        position += 1 + length;
        break;
      }
      case 0x55: {
        // SHORT_BINSTRING
        const length = view.getUint8(position);
        stack.push(text(position + 1, length));
        position += 1 + length;
        break;
      }
      case 0x54: {
        // BINSTRING
        const length = view.getInt32(position, true);
        stack.push(text(position + 4, length));
        position += 4 + length;
        break;
      }
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const end1 = pickle.indexOf(0x0a, position);
        const end2 = pickle.indexOf(0x0a, end1 + 1);
        if (end1 < 0 || end2 < 0) throw new TensorFileError('truncated pickle GLOBAL');
        const name = `${text(position, end1 - position)} ${text(end1 + 1, end2 - end1 - 1)}`;
        position = end2 + 1;
        if (!ALLOWED_GLOBALS.has(name)) throw new TensorFileError(`the file names ${name.replace(' ', '.')}, which a tensor file does not need (refused)`);
        stack.push(new PickleGlobal(name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL (protocol 4): module and name from the stack
        const name = pop();
        const module = pop();
        const qualified = `${String(module)} ${String(name)}`;
        if (!ALLOWED_GLOBALS.has(qualified)) throw new TensorFileError(`the file names ${String(module)}.${String(name)}, which a tensor file does not need (refused)`);
        stack.push(new PickleGlobal(qualified));
        break;
      }
      case 0x71: // BINPUT
        memo.set(view.getUint8(position), top());
        position += 1;
        break;
      case 0x72: // LONG_BINPUT
        memo.set(view.getUint32(position, true), top());
        position += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const index = opcode === 0x68 ? view.getUint8(position) : view.getUint32(position, true);
        position += opcode === 0x68 ? 1 : 4;
        if (!memo.has(index)) throw new TensorFileError('pickle refers to an unknown memo entry');
        stack.push(memo.get(index)!);
        break;
      }
      case 0x74: // TUPLE
        stack.push(popToMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x61: {
        // APPEND
        const item = pop();
        const list = top();
        if (!Array.isArray(list)) throw new TensorFileError('pickle APPEND to something that is not a list');
        (list as StackValue[]).push(item);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popToMark();
        const list = top();
        if (!Array.isArray(list)) throw new TensorFileError('pickle APPENDS to something that is not a list');
        (list as StackValue[]).push(...items);
        break;
      }
      case 0x73: {
        // SETITEM
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popToMark();
        setItems(top(), items);
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x51: {
        // BINPERSID: torch's storage reference ('storage', storage class, key, location, numel)
        const id = pop();
        if (!Array.isArray(id) || id[0] !== 'storage' || !(id[1] instanceof PickleGlobal) || typeof id[2] !== 'string') {
          throw new TensorFileError('unexpected persistent id in the pickle');
        }
        const type = STORAGE_TYPES[id[1].name.split(' ')[1] ?? ''];
        if (type === undefined) throw new TensorFileError(`unsupported storage ${id[1].name}`);
        stack.push(new Storage(type, id[2]));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args), for the one class allowed (ParameterDict): a dict its BUILD fills
        pop();
        const cls = pop();
        if (!(cls instanceof PickleGlobal) || cls.name !== 'torch.nn.modules.container ParameterDict') {
          throw new TensorFileError('pickle NEWOBJ of a class that is not allowed');
        }
        stack.push({});
        break;
      }
      case 0x62: {
        // BUILD: an object's state. A ParameterDict's (its __dict__, `_parameters` among it) is kept as the dict's
        // entries; an OrderedDict's is empty, and tensors carry none we need.
        const state = pop();
        const target = top();
        if (isPlainDict(state) && isPlainDict(target)) Object.assign(target, state);
        break;
      }
      default:
        throw new TensorFileError(`pickle opcode 0x${opcode.toString(16)} is not one a tensor file uses (refused)`);
    }
  }
}

/** A `torch.save` file (zip format): the saved object, its tensors read from the storages beside the pickle. */
export function readTorchFile(bytes: Uint8Array): FileValue {
  const entries = readZip(bytes);
  const pickleName = [...entries.keys()].find((name) => name.endsWith('/data.pkl') || name === 'data.pkl');
  if (pickleName === undefined) throw new TensorFileError('the zip has no data.pkl: not a torch.save file');
  const prefix = pickleName.slice(0, -'data.pkl'.length);
  return unpickle(entries.get(pickleName)!, (storage) => {
    const data = entries.get(`${prefix}data/${storage.key}`);
    if (data === undefined) throw new TensorFileError(`storage ${storage.key} is missing from the zip`);
    return data;
  });
}
