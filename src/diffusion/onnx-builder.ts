/**
 * Builds tiny ONNX models in memory (protobuf written by hand: no onnx package in Node).
 *
 * Used for things that must not depend on a model folder: probing whether an execution provider really runs
 * (`probeModel`), copying a GPU-resident tensor back to the CPU (`identityModel`, see providers.ts), and
 * `imagine-bot setup cuda`'s check.
 *
 * Only the handful of ModelProto fields those models need are written (onnx.proto3 field numbers in comments).
 */
import { ProtoWriter } from './onnx-proto.js';

/** ONNX TensorProto.DataType codes for the element types our tensors use. */
export const ONNX_ELEMENT_TYPES = {
  float32: 1,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
} as const;
export type OnnxElementTypeName = keyof typeof ONNX_ELEMENT_TYPES;

export interface ValueInfo {
  name: string;
  type: OnnxElementTypeName;
  /** Omit for a tensor of any rank; strings are symbolic (dynamic) dimensions. */
  shape?: readonly (number | string)[];
}

export interface NodeSpec {
  opType: string;
  /** The operator's domain; omitted for the default ONNX domain. */
  domain?: string;
  inputs: readonly string[];
  outputs: readonly string[];
  /** Integer attributes (e.g. `axis` of Concat, `to` of Cast). */
  attributes?: Readonly<Record<string, number>>;
}

/** A serialized NodeProto. */
export function encodeNode(node: NodeSpec, name: string): Uint8Array {
  const n = new ProtoWriter();
  for (const input of node.inputs) n.string(1, input);
  for (const output of node.outputs) n.string(2, output);
  n.string(3, name);
  n.string(4, node.opType);
  for (const [attributeName, value] of Object.entries(node.attributes ?? {})) {
    // AttributeProto: name = 1, i = 3, type = 20 (AttributeType.INT = 2). Negative ints (axis = -1) are written as
    // 10-byte two's-complement varints, as protobuf's int64 requires.
    n.message(5, (attribute) => attribute.string(1, attributeName).int64(3, value).int(20, 2));
  }
  if (node.domain) n.string(7, node.domain);
  return n.finish();
}

function writeValueInfo(writer: ProtoWriter, value: ValueInfo): void {
  writer.string(1, value.name); // ValueInfoProto.name
  writer.message(2, (type) => {
    // TypeProto.tensor_type
    type.message(1, (tensor) => {
      tensor.int(1, ONNX_ELEMENT_TYPES[value.type]); // elem_type
      if (value.shape) {
        const shape = value.shape;
        tensor.message(2, (shapeWriter) => {
          for (const dim of shape) {
            shapeWriter.message(1, (d) => (typeof dim === 'number' ? d.int(1, dim) : d.string(2, dim)));
          }
        });
      }
    });
  });
}

/** A single-graph model in the default ONNX domain (opset 17 by default, IR version 8). */
export function buildModel(spec: {
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  nodes: readonly NodeSpec[];
  opset?: number;
}): Uint8Array {
  const model = new ProtoWriter();
  model.int(1, 8); // ir_version
  model.string(2, 'imagine-bot'); // producer_name
  model.message(7, (graph) => {
    spec.nodes.forEach((node, index) => graph.bytesField(1, encodeNode(node, `${node.opType.toLowerCase()}_${index}`)));
    graph.string(2, 'imagine_bot_graph');
    for (const input of spec.inputs) graph.message(11, (w) => writeValueInfo(w, input));
    for (const output of spec.outputs) graph.message(12, (w) => writeValueInfo(w, output));
  });
  model.message(8, (opset) => {
    opset.string(1, '');
    opset.int(2, spec.opset ?? 17);
  });
  return model.finish();
}

/** `y = x + x` over a float32 vector: small enough to load instantly, but it runs a real kernel on the device. */
export function probeModel(): Uint8Array {
  return buildModel({
    inputs: [{ name: 'x', type: 'float32', shape: ['n'] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['n'] }],
    nodes: [{ opType: 'Add', inputs: ['x', 'x'], outputs: ['y'] }],
  });
}

/** `y = x` for a tensor of any shape and the given element type. */
export function identityModel(type: OnnxElementTypeName): Uint8Array {
  return buildModel({
    inputs: [{ name: 'x', type }],
    outputs: [{ name: 'y', type }],
    nodes: [{ opType: 'Identity', inputs: ['x'], outputs: ['y'] }],
  });
}
