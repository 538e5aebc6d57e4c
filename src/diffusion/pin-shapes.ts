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

import { concat, fields, lengthDelimited, ProtoWriter, rewriteFields, stringOf, subMessage, WIRE_BYTES, WIRE_VARINT } from './onnx-proto.js';

/** A problem with the model's declared inputs (wrong rank, a fixed size that differs, an input it lacks). */
export class ShapePinError extends Error {
  override name = 'ShapePinError';
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
      else if (part.number === 2 && part.wireType === WIRE_BYTES) size = stringOf(part.payload);
    }
    dims.push(size);
  }
  return dims;
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
  const pinned = new ProtoWriter();
  for (const size of shape) pinned.message(1, (dim) => dim.int(1, size)); // TensorShapeProto.dim, Dimension.dim_value
  return [pinned.finish()];
}

function pinValueInfo(valueInfo: Uint8Array, shapes: ReadonlyMap<string, readonly number[]>, pinned: Set<string>): Uint8Array[] {
  const name = stringOf(subMessage(valueInfo, 1));
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
    const name = stringOf(subMessage(input.payload, 1));
    const typeProto = subMessage(input.payload, 2);
    const tensorType = typeProto && subMessage(typeProto, 1);
    const shapeProto = tensorType && subMessage(tensorType, 2);
    result[name] = shapeProto ? readDims(shapeProto) : [];
  }
  return result;
}
