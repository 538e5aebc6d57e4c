/**
 * A minimal protobuf reader and writer for ONNX models in memory (no onnx package in Node). Rewrites (pin-shapes.ts,
 * fuse-attention.ts) read fields as views into the original bytes, so unchanged parts (weights included) are copied
 * only once, when the result is concatenated; `ProtoWriter` writes the small new messages (and whole models, in
 * onnx-builder.ts).
 */

export class ProtobufError extends Error {
  override name = 'ProtobufError';
}

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_BYTES = 2;
export const WIRE_FIXED32 = 5;

/**
 * onnx.proto3 field numbers (and TensorProto data types) the load-time rewrites read and write: one list, so the
 * rewrites (clip-skip.ts, vae-encode.ts, textual-inversion.ts, lora/merge.ts) cannot disagree on a number.
 */
export const MODEL_GRAPH = 7;
export const GRAPH_NODE = 1;
export const GRAPH_INITIALIZER = 5;
export const GRAPH_OUTPUT = 12;
export const NODE_INPUT = 1;
export const NODE_OUTPUT = 2;
export const NODE_NAME = 3;
export const NODE_OP_TYPE = 4;
export const NODE_ATTRIBUTE = 5;
export const ATTRIBUTE_NAME = 1;
export const VALUE_INFO_NAME = 1;
export const VALUE_INFO_TYPE = 2;
export const TENSOR_DIMS = 1;
export const TENSOR_DATA_TYPE = 2;
export const TENSOR_FLOAT_DATA = 4;
export const TENSOR_NAME = 8;
export const TENSOR_RAW_DATA = 9;
export const TENSOR_EXTERNAL_DATA = 13;
export const TENSOR_DATA_LOCATION = 14;
export const ONNX_FLOAT = 1;
export const ONNX_FLOAT16 = 10;

export interface Field {
  number: number;
  wireType: number;
  /** The whole field: key, length prefix and payload. */
  raw: Uint8Array;
  /** The payload of a length-delimited field, or the varint's value. */
  payload: Uint8Array;
  value: bigint;
}

export function readVarint(bytes: Uint8Array, start: number): { value: bigint; end: number } {
  let value = 0n;
  let shift = 0n;
  let position = start;
  for (;;) {
    const byte = bytes[position];
    if (byte === undefined) throw new ProtobufError('truncated protobuf varint');
    position++;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value, end: position };
    shift += 7n;
    if (shift > 63n) throw new ProtobufError('protobuf varint longer than 64 bits');
  }
}

export function* fields(bytes: Uint8Array): Generator<Field> {
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
      if (position > bytes.length) throw new ProtobufError('truncated protobuf field');
      payload = bytes.subarray(payloadStart, position);
    } else if (wireType === WIRE_FIXED64) {
      position += 8;
    } else if (wireType === WIRE_FIXED32) {
      position += 4;
    } else {
      throw new ProtobufError(`unsupported protobuf wire type ${wireType}`);
    }
    if (position > bytes.length) throw new ProtobufError('truncated protobuf field');
    yield { number, wireType, raw: bytes.subarray(start, position), payload, value };
  }
}

export function encodeVarint(value: bigint | number): Uint8Array {
  let remaining = BigInt(value);
  const out: number[] = [];
  while (remaining > 0x7fn) {
    out.push(Number(remaining & 0x7fn) | 0x80);
    remaining >>= 7n;
  }
  out.push(Number(remaining));
  return Uint8Array.from(out);
}

export function lengthDelimited(number: number, parts: readonly Uint8Array[]): Uint8Array[] {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  return [encodeVarint((number << 3) | WIRE_BYTES), encodeVarint(length), ...parts];
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Rewrites the length-delimited fields numbered `number` with `rewrite`; every other field is kept byte for byte. */
export function rewriteFields(bytes: Uint8Array, number: number, rewrite: (payload: Uint8Array) => Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const field of fields(bytes)) {
    if (field.number === number && field.wireType === WIRE_BYTES) out.push(...lengthDelimited(number, rewrite(field.payload)));
    else out.push(field.raw);
  }
  return out;
}

/** The payload of the first length-delimited field numbered `number`, or null. */
export function subMessage(bytes: Uint8Array, number: number): Uint8Array | null {
  for (const field of fields(bytes)) if (field.number === number && field.wireType === WIRE_BYTES) return field.payload;
  return null;
}


/** A string field's text ('' for an absent field). */
export function stringOf(bytes: Uint8Array | null): string {
  return bytes === null ? '' : new TextDecoder().decode(bytes);
}

/** The op types of a serialized model's top-level graph nodes (GraphProto.node = 1, NodeProto.op_type = 4), in order. */
export function graphOpTypes(model: Uint8Array): string[] {
  const graph = subMessage(model, 7);
  if (graph === null) throw new ProtobufError('not an ONNX model: no graph');
  const ops: string[] = [];
  for (const node of fields(graph)) {
    if (node.number !== 1 || node.wireType !== WIRE_BYTES) continue;
    ops.push(stringOf(subMessage(node.payload, 4)));
  }
  return ops;
}

/** Writes a small protobuf message field by field. */
export class ProtoWriter {
  private readonly bytes: number[] = [];

  private varint(value: number): void {
    let v = value;
    while (v > 0x7f) {
      this.bytes.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    this.bytes.push(v);
  }

  private key(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  int(field: number, value: number): this {
    this.key(field, 0);
    this.varint(value);
    return this;
  }

  int64(field: number, value: number): this {
    if (value >= 0) return this.int(field, value);
    this.key(field, 0);
    let v = BigInt.asUintN(64, BigInt(value));
    while (v > 0x7fn) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
    return this;
  }

  bytesField(field: number, data: Uint8Array): this {
    this.key(field, 2);
    this.varint(data.length);
    for (const byte of data) this.bytes.push(byte);
    return this;
  }

  string(field: number, text: string): this {
    return this.bytesField(field, new TextEncoder().encode(text));
  }

  message(field: number, write: (writer: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    write(inner);
    return this.bytesField(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}
