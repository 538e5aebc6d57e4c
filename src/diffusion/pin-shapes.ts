/**
 * Pins a model's symbolic input dimensions to fixed sizes: what ONNX Runtime's `freeDimensionOverrides` does, which
 * onnxruntime-node's session options do not offer (its binding has no such option in 1.30).
 *
 * Why: with every input dimension known, ORT's constant folding removes the shape arithmetic the export left in the
 * graph (Shape → Gather → Unsqueeze → Concat → Reshape around every attention block) and its fusions can match more
 * (LayerNormalization, for one). On diffusers' tiny SD 1.5 UNet, ORT's optimised graph shrinks from 1106 to 663 nodes
 * and loses all 75 Shape nodes (CPU EP, `graphOptimizationLevel: 'all'`); on WebGPU those small int64 nodes run on
 * the CPU between GPU kernels. The price: the session then only accepts that one shape.
 *
 * The model is rewritten in memory: only the graph inputs' TensorShapeProto dims change; every other byte of the
 * ModelProto is copied as it is (weights stay in their external file, found through the session's
 * `session.model_external_initializers_file_folder_path` entry, see providers.ts).
 *
 * onnx.proto3 field numbers used: ModelProto.graph = 7; GraphProto.input = 11; ValueInfoProto.name = 1, .type = 2;
 * TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1,
 * .dim_param = 2.
 */

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

/** A problem with the model's declared inputs (wrong rank, a fixed size that differs, an input it lacks). */
export class ShapePinError extends Error {
  override name = 'ShapePinError';
}

interface Field {
  number: number;
  wireType: number;
  /** The whole field: key, length prefix and payload. */
  raw: Uint8Array;
  /** The payload of a length-delimited field, or the varint's value. */
  payload: Uint8Array;
  value: bigint;
}

function readVarint(bytes: Uint8Array, start: number): { value: bigint; end: number } {
  let value = 0n;
  let shift = 0n;
  let position = start;
  for (;;) {
    const byte = bytes[position];
    if (byte === undefined) throw new ShapePinError('truncated protobuf varint');
    position++;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value, end: position };
    shift += 7n;
    if (shift > 63n) throw new ShapePinError('protobuf varint longer than 64 bits');
  }
}

function* fields(bytes: Uint8Array): Generator<Field> {
  let position = 0;
  while (position < bytes.length) {
    const start = position;
    const key = readVarint(bytes, position);
    position = key.end;
    const number = Number(key.value >> 3n);
    const wireType = Number(key.value & 7n);
    let payload: Uint8Array = new Uint8Array(0);
    let value = 0n;
    if (wireType === WIRE_VARINT) {
      const read = readVarint(bytes, position);
      value = read.value;
      position = read.end;
    } else if (wireType === WIRE_BYTES) {
      const length = readVarint(bytes, position);
      const payloadStart = length.end;
      position = payloadStart + Number(length.value);
      if (position > bytes.length) throw new ShapePinError('truncated protobuf field');
      payload = bytes.subarray(payloadStart, position);
    } else if (wireType === WIRE_FIXED64) {
      position += 8;
    } else if (wireType === WIRE_FIXED32) {
      position += 4;
    } else {
      throw new ShapePinError(`unsupported protobuf wire type ${wireType}`);
    }
    if (position > bytes.length) throw new ShapePinError('truncated protobuf field');
    yield { number, wireType, raw: bytes.subarray(start, position), payload, value };
  }
}

function encodeVarint(value: bigint | number): Uint8Array {
  let remaining = BigInt(value);
  const out: number[] = [];
  while (remaining > 0x7fn) {
    out.push(Number(remaining & 0x7fn) | 0x80);
    remaining >>= 7n;
  }
  out.push(Number(remaining));
  return Uint8Array.from(out);
}

function lengthDelimited(number: number, parts: readonly Uint8Array[]): Uint8Array[] {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  return [encodeVarint((number << 3) | WIRE_BYTES), encodeVarint(length), ...parts];
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Rewrites the length-delimited fields numbered `number` with `rewrite`; every other field is kept byte for byte. */
function rewriteFields(bytes: Uint8Array, number: number, rewrite: (payload: Uint8Array) => Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const field of fields(bytes)) {
    if (field.number === number && field.wireType === WIRE_BYTES) out.push(...lengthDelimited(number, rewrite(field.payload)));
    else out.push(field.raw);
  }
  return out;
}

function describeDims(dims: ReadonlyArray<number | string>): string {
  return `[${dims.join(', ')}]`;
}

/** The dims of a TensorShapeProto: fixed sizes as numbers, symbolic ones by name, unknown ones as '?'. */
function readDims(shapeProto: Uint8Array): Array<number | string> {
  const dims: Array<number | string> = [];
  for (const dim of fields(shapeProto)) {
    if (dim.number !== 1 || dim.wireType !== WIRE_BYTES) continue;
    let size: number | string = '?';
    for (const part of fields(dim.payload)) {
      if (part.number === 1 && part.wireType === WIRE_VARINT) size = Number(BigInt.asIntN(64, part.value));
      else if (part.number === 2 && part.wireType === WIRE_BYTES) size = new TextDecoder().decode(part.payload);
    }
    dims.push(size);
  }
  return dims;
}

/** The payload of the first length-delimited field numbered `number`, or null. */
function subMessage(bytes: Uint8Array, number: number): Uint8Array | null {
  for (const field of fields(bytes)) if (field.number === number && field.wireType === WIRE_BYTES) return field.payload;
  return null;
}

/** TensorShapeProto with its symbolic (or unknown) dims set to `shape`; fixed dims must already equal it. */
function pinShape(input: string, shapeProto: Uint8Array | null, shape: readonly number[]): Uint8Array[] {
  if (shapeProto !== null) {
    const declared = readDims(shapeProto);
    if (declared.length !== shape.length) {
      throw new ShapePinError(`input ${input} has ${declared.length} dimensions ${describeDims(declared)}, not ${shape.length}`);
    }
    declared.forEach((size, axis) => {
      if (typeof size === 'number' && size !== shape[axis]) {
        throw new ShapePinError(`input ${input} is declared ${describeDims(declared)}; it cannot take ${describeDims(shape)}`);
      }
    });
  }
  return shape.flatMap((size) => lengthDelimited(1, [encodeVarint((1 << 3) | WIRE_VARINT), encodeVarint(size)]));
}

function pinValueInfo(valueInfo: Uint8Array, shapes: ReadonlyMap<string, readonly number[]>, pinned: Set<string>): Uint8Array[] {
  const name = new TextDecoder().decode(subMessage(valueInfo, 1) ?? new Uint8Array(0));
  const shape = shapes.get(name);
  if (shape === undefined) return [valueInfo];
  pinned.add(name);
  return rewriteFields(valueInfo, 2, (typeProto) => {
    let isTensor = false;
    const out = rewriteFields(typeProto, 1, (tensorType) => {
      isTensor = true;
      const kept = [...fields(tensorType)].filter((field) => field.number !== 2).map((field) => field.raw);
      return [...kept, ...lengthDelimited(2, pinShape(name, subMessage(tensorType, 2), shape))];
    });
    if (!isTensor) throw new ShapePinError(`input ${name} is not a tensor`);
    return out;
  });
}

/**
 * Returns a copy of the serialized model whose graph inputs named in `shapes` have those exact sizes. Inputs not
 * named keep their declared shapes. Throws a ShapePinError for an input the graph lacks, a rank that differs, or a
 * fixed size that differs from the one asked for.
 */
export function pinInputShapes(model: Uint8Array, shapes: Readonly<Record<string, readonly number[]>>): Uint8Array {
  const wanted = new Map(Object.entries(shapes));
  for (const [name, shape] of wanted) {
    if (!shape.every((size) => Number.isSafeInteger(size) && size > 0)) {
      throw new ShapePinError(`shape ${describeDims(shape)} for input ${name} must be positive integers`);
    }
  }
  const pinned = new Set<string>();
  let hasGraph = false;
  const out = rewriteFields(model, 7, (graph) => {
    hasGraph = true;
    return rewriteFields(graph, 11, (valueInfo) => pinValueInfo(valueInfo, wanted, pinned));
  });
  if (!hasGraph) throw new ShapePinError('not an ONNX model: no graph');
  const missing = [...wanted.keys()].filter((name) => !pinned.has(name));
  if (missing.length > 0) throw new ShapePinError(`the model has no input named ${missing.join(', ')}`);
  return concat(out);
}

/** The declared input shapes of a serialized model (symbolic dims by name, unknown as '?'); for tests and logs. */
export function declaredInputShapes(model: Uint8Array): Record<string, Array<number | string>> {
  const result: Record<string, Array<number | string>> = {};
  const graph = subMessage(model, 7);
  if (graph === null) throw new ShapePinError('not an ONNX model: no graph');
  for (const input of fields(graph)) {
    if (input.number !== 11 || input.wireType !== WIRE_BYTES) continue;
    const name = new TextDecoder().decode(subMessage(input.payload, 1) ?? new Uint8Array(0));
    const typeProto = subMessage(input.payload, 2);
    const tensorType = typeProto && subMessage(typeProto, 1);
    const shapeProto = tensorType && subMessage(tensorType, 2);
    result[name] = shapeProto ? readDims(shapeProto) : [];
  }
  return result;
}

/** The op types of a serialized model's top-level graph nodes (GraphProto.node = 1, NodeProto.op_type = 4), in order. */
export function graphOpTypes(model: Uint8Array): string[] {
  const graph = subMessage(model, 7);
  if (graph === null) throw new ShapePinError('not an ONNX model: no graph');
  const ops: string[] = [];
  for (const node of fields(graph)) {
    if (node.number !== 1 || node.wireType !== WIRE_BYTES) continue;
    ops.push(new TextDecoder().decode(subMessage(node.payload, 4) ?? new Uint8Array(0)));
  }
  return ops;
}
