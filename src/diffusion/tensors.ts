/**
 * Tensors of whatever element type a session input wants, built from float32 data or numbers, into buffers that are
 * allocated once: one `TensorFeeder` per session input, reused every step.
 *
 * The dtype is read from the session's metadata (`inputMetadata` is a positional array aligned with `inputNames` in
 * onnxruntime-node 1.30), never assumed: exports differ (fp16 UNets, int64 or float timesteps, int32 or int64 ids).
 */
import * as ort from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';

import { numberToHalfBits, toFloat16Into, toFloat32Into } from './fp16.js';

export type FeedDtype = 'float32' | 'float16' | 'int32' | 'int64';

function metadataOf(
  names: readonly string[],
  metadata: readonly InferenceSession.ValueMetadata[],
  name: string,
  what: string,
): InferenceSession.ValueMetadata {
  const index = names.indexOf(name);
  const meta = index >= 0 ? metadata[index] : undefined;
  if (!meta) throw new Error(`the model has no ${what} named ${name} (it has ${names.join(', ')})`);
  return meta;
}

/** The element type of a session input, from its metadata. */
export function inputDtype(session: InferenceSession, name: string): string {
  const meta = metadataOf(session.inputNames, session.inputMetadata, name, 'input');
  if (!meta.isTensor) throw new Error(`input ${name} is not a tensor`);
  return meta.type;
}

/** The declared shape of a session input or output: numbers for fixed axes, names for dynamic ones. */
export function declaredShape(session: InferenceSession, name: string): readonly (number | string)[] {
  const inInputs = session.inputNames.includes(name);
  const meta = inInputs
    ? metadataOf(session.inputNames, session.inputMetadata, name, 'input')
    : metadataOf(session.outputNames, session.outputMetadata, name, 'output');
  return meta.isTensor ? meta.shape : [];
}

function asFeedDtype(type: string, name: string): FeedDtype {
  if (type === 'float32' || type === 'float16' || type === 'int32' || type === 'int64') return type;
  throw new Error(`input ${name} has element type ${type}, which we cannot feed`);
}

/**
 * Owns the buffer and the `ort.Tensor` for one input of fixed dims. `set…` writes (converting as needed) into the
 * owned buffer and returns the same tensor object every time: no allocation per call.
 */
export class TensorFeeder {
  readonly tensor: ort.Tensor;
  readonly size: number;
  private readonly floats: Float32Array | null = null;
  private readonly halves: Uint16Array | null = null;
  private readonly int32: Int32Array | null = null;
  private readonly int64: BigInt64Array | null = null;

  constructor(
    readonly name: string,
    readonly dtype: FeedDtype,
    readonly dims: readonly number[],
  ) {
    this.size = dims.reduce((product, dim) => product * dim, 1);
    switch (dtype) {
      case 'float32':
        this.floats = new Float32Array(this.size);
        this.tensor = new ort.Tensor('float32', this.floats, dims);
        break;
      case 'float16':
        this.halves = new Uint16Array(this.size);
        this.tensor = new ort.Tensor('float16', this.halves, dims);
        break;
      case 'int32':
        this.int32 = new Int32Array(this.size);
        this.tensor = new ort.Tensor('int32', this.int32, dims);
        break;
      case 'int64':
        this.int64 = new BigInt64Array(this.size);
        this.tensor = new ort.Tensor('int64', this.int64, dims);
        break;
    }
  }

  /** A feeder for `name` of `session`, with the dtype its metadata declares. */
  static forInput(session: InferenceSession, name: string, dims: readonly number[]): TensorFeeder {
    return new TensorFeeder(name, asFeedDtype(inputDtype(session, name), name), dims);
  }

  private checkLength(length: number): void {
    if (length !== this.size) throw new RangeError(`${this.name}: got ${length} values for dims [${this.dims.join(', ')}]`);
  }

  /** Float data in (latents, embeddings); integer inputs take the values truncated toward zero. */
  setFloats(values: Float32Array): ort.Tensor {
    this.checkLength(values.length);
    if (this.floats) this.floats.set(values);
    else if (this.halves) toFloat16Into(values, this.halves);
    else if (this.int32) for (let i = 0; i < values.length; i++) this.int32[i] = Math.trunc(values[i]!);
    else if (this.int64) for (let i = 0; i < values.length; i++) this.int64[i] = BigInt(Math.trunc(values[i]!));
    return this.tensor;
  }

  /** Integer data in (token ids). */
  setInts(values: ArrayLike<number>): ort.Tensor {
    this.checkLength(values.length);
    for (let i = 0; i < values.length; i++) this.write(i, values[i]!);
    return this.tensor;
  }

  /** Every element set to one number (a timestep for the whole batch). */
  fill(value: number): ort.Tensor {
    if (this.floats) this.floats.fill(value);
    else if (this.halves) this.halves.fill(numberToHalfBits(value));
    else if (this.int32) this.int32.fill(Math.trunc(value));
    else if (this.int64) this.int64.fill(BigInt(Math.trunc(value)));
    return this.tensor;
  }

  private write(index: number, value: number): void {
    if (this.floats) this.floats[index] = value;
    else if (this.halves) this.halves[index] = numberToHalfBits(value);
    else if (this.int32) this.int32[index] = Math.trunc(value);
    else if (this.int64) this.int64[index] = BigInt(Math.trunc(value));
  }
}

/**
 * Copies a float32 or float16 CPU tensor into a float32 buffer (exact for float16). A GPU-resident tensor must be read
 * with providers.ts' `GpuTensorReader` first.
 */
export function readFloats(tensor: ort.Tensor, into: Float32Array): Float32Array {
  if (tensor.location !== 'cpu' && tensor.location !== 'cpu-pinned') {
    throw new Error(`tensor is on ${tensor.location}: read it with GpuTensorReader`);
  }
  if (tensor.type === 'float32') into.set(tensor.data as Float32Array);
  else if (tensor.type === 'float16') toFloat32Into(tensor.data as Uint16Array, into);
  else throw new Error(`expected a float tensor, got ${tensor.type}`);
  return into;
}

/** Like readFloats, for float data that arrived as a typed array (e.g. from GpuTensorReader). */
export function floatsFromData(data: unknown, type: string, into: Float32Array): Float32Array {
  if (type === 'float32' && data instanceof Float32Array) into.set(data);
  else if (type === 'float16' && data instanceof Uint16Array) toFloat32Into(data, into);
  else throw new Error(`expected float32 or float16 data, got ${type}`);
  return into;
}

/** A session's first output (the only one the text encoder, UNet and VAE decoder are read for). */
export function firstOutput(session: InferenceSession, outputs: InferenceSession.OnnxValueMapType): ort.Tensor {
  return outputs[session.outputNames[0]!] as ort.Tensor;
}
