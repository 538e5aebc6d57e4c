/**
 * Fuses the UNet's attention blocks into ONNX Runtime's `com.microsoft.MultiHeadAttention` operator.
 *
 * Why: diffusers' export writes scaled dot-product attention as separate nodes, so ORT materialises the full
 * (batch·heads) × tokens × tokens score matrix between them: at 512² the first blocks attend over 4096 tokens, a
 * 2 × 8 × 4096 × 4096 tensor (256 Mi elements) written and read back around the Softmax, twice per block. The fused
 * operator computes the same softmax(Q·Kᵀ/√d)·V without that round trip where the provider has a fused kernel
 * (WebGPU's flash attention, CUDA's memory-efficient attention); the CPU provider has one too, which is how this is
 * tested here. ORT's own online optimiser does not fuse this pattern (its attention fusions are for BERT-like graphs);
 * its Python `transformers.optimizer` does, offline, which this replaces for Node.
 *
 * The pattern, as torch's ONNX export (opset 14–17) writes `F.scaled_dot_product_attention` inside diffusers'
 * `Attention` (AttnProcessor2_0), with Q, K, V the `to_q` / `to_k` / `to_v` projections ([B, S, H·D]):
 *
 *   q = Transpose[0,2,1,3](Reshape(Q, [B, -1, H, D]))      k = Transpose[0,2,3,1](Reshape(K, [B, -1, H, D]))
 *   scores = MatMul(Mul(q, √s), Mul(k, √s))                 s = 1/√D, computed from Shape(q) at run time
 *   out = Reshape(Transpose[0,2,1,3](MatMul(Softmax(scores), Transpose[0,2,1,3](Reshape(V, [B, -1, H, D])))), [B, -1, H·D])
 *
 * becomes `MultiHeadAttention(Q, K, V)` with `num_heads = H` (the constant in the Reshape targets) and the default
 * scale 1/√D (checked: the scale must be the one computed from the head size, as above). Casts between the nodes of
 * the scale computation are allowed (fp16 exports have them). Every matched block is replaced; a block that deviates
 * from the pattern in any way is left as it is, and the nodes only the replaced blocks used are removed.
 *
 * onnx.proto3 field numbers used: ModelProto.opset_import = 8 (OperatorSetIdProto.domain = 1, .version = 2),
 * .graph = 7; GraphProto.node = 1, .initializer = 5, .output = 12; NodeProto.input = 1, .output = 2, .name = 3,
 * .op_type = 4, .attribute = 5, .domain = 7; AttributeProto.name = 1, .f = 2, .i = 3, .t = 5, .g = 6, .ints = 8,
 * .graphs = 11, .type = 20; TensorProto.dims = 1, .data_type = 2, .float_data = 4, .int64_data = 7, .name = 8,
 * .raw_data = 9.
 */
import { halfBitsToNumber } from './fp16.js';
import { encodeNode } from './onnx-builder.js';
import {
  concat,
  fields,
  ProtobufError,
  ProtoWriter,
  readVarint,
  rewriteFields,
  stringOf,
  subMessage,
  WIRE_BYTES,
  WIRE_FIXED32,
  WIRE_VARINT,
} from './onnx-proto.js';

const MICROSOFT_DOMAIN = 'com.microsoft';

interface OnnxNode {
  /** Position among the graph's nodes. */
  index: number;
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  /** The AttributeProto payloads by name. */
  attributes: Map<string, Uint8Array>;
}

export interface AttentionFusion {
  /** The rewritten model (the input itself when nothing matched). */
  model: Uint8Array;
  /** Attention blocks replaced by MultiHeadAttention. */
  fused: number;
  /** Softmax nodes that were not part of a block of the expected shape (left as they are). */
  skipped: number;
  /** Nodes in the graph before and after. */
  nodesBefore: number;
  nodesAfter: number;
}

function parseNode(index: number, bytes: Uint8Array): OnnxNode {
  const node: OnnxNode = { index, name: '', opType: '', domain: '', inputs: [], outputs: [], attributes: new Map() };
  for (const field of fields(bytes)) {
    if (field.wireType !== WIRE_BYTES) continue;
    if (field.number === 1) node.inputs.push(stringOf(field.payload));
    else if (field.number === 2) node.outputs.push(stringOf(field.payload));
    else if (field.number === 3) node.name = stringOf(field.payload);
    else if (field.number === 4) node.opType = stringOf(field.payload);
    else if (field.number === 7) node.domain = stringOf(field.payload);
    else if (field.number === 5) node.attributes.set(stringOf(subMessage(field.payload, 1)), field.payload);
  }
  return node;
}

/** Repeated int64 values of one field number, packed or not. */
function int64s(bytes: Uint8Array, number: number): bigint[] {
  const values: bigint[] = [];
  for (const field of fields(bytes)) {
    if (field.number !== number) continue;
    if (field.wireType === WIRE_VARINT) values.push(BigInt.asIntN(64, field.value));
    else if (field.wireType === WIRE_BYTES) {
      for (let position = 0; position < field.payload.length; ) {
        const packed = readVarint(field.payload, position);
        values.push(BigInt.asIntN(64, packed.value));
        position = packed.end;
      }
    }
  }
  return values;
}

function intAttribute(node: OnnxNode, name: string): bigint | undefined {
  const attribute = node.attributes.get(name);
  if (!attribute) return undefined;
  for (const field of fields(attribute)) if (field.number === 3 && field.wireType === WIRE_VARINT) return BigInt.asIntN(64, field.value);
  return undefined;
}

function intsAttribute(node: OnnxNode, name: string): number[] | undefined {
  const attribute = node.attributes.get(name);
  return attribute ? int64s(attribute, 8).map(Number) : undefined;
}

/** The values of a small constant tensor (TensorProto) as numbers; undefined for types we do not read. */
function tensorValues(tensor: Uint8Array): number[] | undefined {
  let dataType = 0;
  let raw: Uint8Array | null = null;
  const floats: number[] = [];
  for (const field of fields(tensor)) {
    if (field.number === 2 && field.wireType === WIRE_VARINT) dataType = Number(field.value);
    else if (field.number === 9 && field.wireType === WIRE_BYTES) raw = field.payload;
    else if (field.number === 4 && field.wireType === WIRE_BYTES) {
      const view = new DataView(field.payload.buffer, field.payload.byteOffset, field.payload.byteLength);
      for (let offset = 0; offset + 4 <= field.payload.length; offset += 4) floats.push(view.getFloat32(offset, true));
    } else if (field.number === 4 && field.wireType === WIRE_FIXED32) {
      floats.push(new DataView(field.raw.buffer, field.raw.byteOffset + field.raw.length - 4, 4).getFloat32(0, true));
    }
  }
  if (raw === null) {
    if (dataType === 1) return floats;
    if (dataType === 7 || dataType === 6) return int64s(tensor, dataType === 7 ? 7 : 5).map(Number);
    return undefined;
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const read = (size: number, get: (offset: number) => number): number[] =>
    Array.from({ length: Math.floor(raw!.length / size) }, (_, i) => get(i * size));
  switch (dataType) {
    case 1:
      return read(4, (offset) => view.getFloat32(offset, true));
    case 6:
      return read(4, (offset) => view.getInt32(offset, true));
    case 7:
      return read(8, (offset) => Number(view.getBigInt64(offset, true)));
    case 10:
      return read(2, (offset) => halfBitsToNumber(view.getUint16(offset, true)));
    case 11:
      return read(8, (offset) => view.getFloat64(offset, true));
    default:
      return undefined;
  }
}

class Graph {
  readonly nodes: OnnxNode[] = [];
  readonly producer = new Map<string, OnnxNode>();
  readonly consumers = new Map<string, OnnxNode[]>();
  readonly graphOutputs = new Set<string>();
  /** Small initializers (no external data), for constants fed as initializers rather than Constant nodes. */
  private readonly initializers = new Map<string, Uint8Array>();
  hasSubgraphs = false;

  constructor(graph: Uint8Array) {
    for (const field of fields(graph)) {
      if (field.wireType !== WIRE_BYTES) continue;
      if (field.number === 1) this.nodes.push(parseNode(this.nodes.length, field.payload));
      else if (field.number === 12) this.graphOutputs.add(stringOf(subMessage(field.payload, 1)));
      else if (field.number === 5 && field.payload.length < 4096) this.initializers.set(stringOf(subMessage(field.payload, 8)), field.payload);
    }
    for (const node of this.nodes) {
      for (const output of node.outputs) this.producer.set(output, node);
      for (const input of node.inputs) {
        const list = this.consumers.get(input) ?? [];
        list.push(node);
        this.consumers.set(input, list);
      }
      for (const attribute of node.attributes.values()) {
        for (const field of fields(attribute)) if (field.number === 6 || field.number === 11) this.hasSubgraphs = true;
      }
    }
  }

  /** The producing node when it has this op type (and the default domain). */
  producedBy(tensor: string | undefined, opType: string): OnnxNode | undefined {
    const node = tensor === undefined ? undefined : this.producer.get(tensor);
    return node && node.opType === opType && node.domain === '' ? node : undefined;
  }

  /** The producer, looking through Cast nodes. */
  producedThroughCasts(tensor: string | undefined, opType: string): OnnxNode | undefined {
    let current = tensor;
    for (let hops = 0; hops < 8 && current !== undefined; hops++) {
      const cast = this.producedBy(current, 'Cast');
      if (!cast) return this.producedBy(current, opType);
      current = cast.inputs[0];
    }
    return undefined;
  }

  /** The values of a Constant node's output or a small initializer. */
  constantValues(tensor: string | undefined): number[] | undefined {
    if (tensor === undefined) return undefined;
    const initializer = this.initializers.get(tensor);
    if (initializer) return tensorValues(initializer);
    const constant = this.producedBy(tensor, 'Constant');
    const value = constant?.attributes.get('value');
    const tensorProto = value ? subMessage(value, 5) : null;
    return tensorProto ? tensorValues(tensorProto) : undefined;
  }

  consumersOf(tensor: string): OnnxNode[] {
    return this.consumers.get(tensor) ?? [];
  }

  /** Whether `tensor` is read by exactly this node and nothing else (not a graph output either). */
  onlyFeeds(tensor: string | undefined, node: OnnxNode): boolean {
    if (tensor === undefined || this.graphOutputs.has(tensor)) return false;
    const consumers = this.consumersOf(tensor);
    return consumers.length === 1 && consumers[0] === node;
  }
}

interface AttentionBlock {
  query: string;
  key: string;
  value: string;
  heads: number;
  /** The block's last node (the Reshape back to [B, S, H·D]); the fused node takes its place and its output. */
  output: OnnxNode;
}

function hasPerm(node: OnnxNode | undefined, perm: readonly number[]): node is OnnxNode {
  const actual = node ? intsAttribute(node, 'perm') : undefined;
  return actual !== undefined && actual.length === perm.length && actual.every((value, i) => value === perm[i]);
}

/**
 * The head count of `Reshape(X, Concat(batch, -1, H, D))`: H, when the third entry is a constant (as the export
 * writes it); undefined otherwise.
 */
function headsOfSplit(graph: Graph, reshape: OnnxNode): number | undefined {
  const target = graph.producedBy(reshape.inputs[1], 'Concat');
  if (!target || target.inputs.length !== 4) return undefined;
  const heads = graph.constantValues(target.inputs[2]);
  return heads?.length === 1 && Number.isInteger(heads[0]) && heads[0]! > 0 ? heads[0] : undefined;
}

/**
 * Whether `scale` is √(1/√D) computed from the last dimension of `headsFirst` (the export's default scale, split
 * over Q and K): Sqrt(Div(1, Sqrt(Cast(Slice(Shape(q), -1))))), with Casts allowed anywhere.
 */
function isDefaultScaleRoot(graph: Graph, scale: string | undefined, headsFirst: string): boolean {
  const outerSqrt = graph.producedThroughCasts(scale, 'Sqrt');
  const division = graph.producedThroughCasts(outerSqrt?.inputs[0], 'Div');
  if (!division) return false;
  const numerator = graph.constantValues(division.inputs[0]);
  if (numerator?.length !== 1 || numerator[0] !== 1) return false;
  const innerSqrt = graph.producedThroughCasts(division.inputs[1], 'Sqrt');
  const slice = graph.producedThroughCasts(innerSqrt?.inputs[0], 'Slice');
  const starts = graph.constantValues(slice?.inputs[1]);
  const shape = graph.producedBy(slice?.inputs[0], 'Shape');
  return starts?.length === 1 && starts[0] === -1 && shape?.inputs[0] === headsFirst;
}

/** The attention block whose Softmax this is, when every node matches the export's pattern (see the top). */
function matchBlock(graph: Graph, softmax: OnnxNode, opset: number): AttentionBlock | undefined {
  const axis = intAttribute(softmax, 'axis');
  if (axis === undefined ? opset < 13 : axis !== -1n && axis !== 3n) return undefined;
  const scores = graph.producedBy(softmax.inputs[0], 'MatMul');
  if (!scores || !graph.onlyFeeds(softmax.inputs[0], softmax)) return undefined;

  const [scaledQuery, scaledKey] = [graph.producedBy(scores.inputs[0], 'Mul'), graph.producedBy(scores.inputs[1], 'Mul')];
  if (!scaledQuery || !scaledKey || !graph.onlyFeeds(scores.inputs[0], scores) || !graph.onlyFeeds(scores.inputs[1], scores)) return undefined;
  const split = (mul: OnnxNode, perm: readonly number[]): { transpose: OnnxNode; scale: string } | undefined => {
    for (const [data, scale] of [[mul.inputs[0], mul.inputs[1]], [mul.inputs[1], mul.inputs[0]]] as const) {
      const transpose = graph.producedBy(data, 'Transpose');
      if (hasPerm(transpose, perm) && scale !== undefined) return { transpose, scale };
    }
    return undefined;
  };
  const query = split(scaledQuery, [0, 2, 1, 3]);
  const key = split(scaledKey, [0, 2, 3, 1]);
  if (!query || !key) return undefined;
  const queryHeadsFirst = query.transpose.outputs[0]!;
  // Q's heads-first view also feeds the Shape nodes that compute the scale; nothing else may read it.
  const queryReaders = graph.consumersOf(queryHeadsFirst);
  if (!queryReaders.every((node) => node === scaledQuery || (node.opType === 'Shape' && node.domain === ''))) return undefined;
  if (!graph.onlyFeeds(key.transpose.outputs[0], scaledKey)) return undefined;
  if (!isDefaultScaleRoot(graph, query.scale, queryHeadsFirst) || !isDefaultScaleRoot(graph, key.scale, queryHeadsFirst)) return undefined;

  const queryReshape = graph.producedBy(query.transpose.inputs[0], 'Reshape');
  const keyReshape = graph.producedBy(key.transpose.inputs[0], 'Reshape');
  if (!queryReshape || !keyReshape) return undefined;
  if (!graph.onlyFeeds(queryReshape.outputs[0], query.transpose) || !graph.onlyFeeds(keyReshape.outputs[0], key.transpose)) return undefined;

  const [weighted] = graph.consumersOf(softmax.outputs[0]!);
  if (!weighted || weighted.opType !== 'MatMul' || weighted.domain !== '' || weighted.inputs[0] !== softmax.outputs[0]) return undefined;
  if (!graph.onlyFeeds(softmax.outputs[0], weighted)) return undefined;
  const valueTranspose = graph.producedBy(weighted.inputs[1], 'Transpose');
  if (!hasPerm(valueTranspose, [0, 2, 1, 3]) || !graph.onlyFeeds(weighted.inputs[1], weighted)) return undefined;
  const valueReshape = graph.producedBy(valueTranspose.inputs[0], 'Reshape');
  if (!valueReshape || !graph.onlyFeeds(valueReshape.outputs[0], valueTranspose)) return undefined;

  const [merge] = graph.consumersOf(weighted.outputs[0]!);
  if (!merge || merge.opType !== 'Transpose' || !hasPerm(merge, [0, 2, 1, 3]) || !graph.onlyFeeds(weighted.outputs[0], merge)) return undefined;
  const [output] = graph.consumersOf(merge.outputs[0]!);
  if (!output || output.opType !== 'Reshape' || output.domain !== '' || !graph.onlyFeeds(merge.outputs[0], output)) return undefined;

  const heads = headsOfSplit(graph, queryReshape);
  if (heads === undefined || headsOfSplit(graph, keyReshape) !== heads || headsOfSplit(graph, valueReshape) !== heads) return undefined;
  const [queryIn, keyIn, valueIn] = [queryReshape.inputs[0], keyReshape.inputs[0], valueReshape.inputs[0]];
  if (queryIn === undefined || keyIn === undefined || valueIn === undefined) return undefined;
  return { query: queryIn, key: keyIn, value: valueIn, heads, output };
}

/** A NodeProto for the fused node; it takes the place and the output of the block's last Reshape. */
function multiHeadAttentionNode(block: AttentionBlock): Uint8Array {
  const scope = block.output.name.replace(/\/[^/]*$/, '') || block.output.name;
  return encodeNode(
    {
      opType: 'MultiHeadAttention',
      domain: MICROSOFT_DOMAIN,
      inputs: [block.query, block.key, block.value],
      outputs: [block.output.outputs[0]!],
      attributes: { num_heads: block.heads },
    },
    `${scope}/MultiHeadAttention`,
  );
}

/** The model's opset imports: version by domain ('' is the default ONNX domain). */
function opsetImports(model: Uint8Array): Map<string, number> {
  const imports = new Map<string, number>();
  for (const field of fields(model)) {
    if (field.number !== 8 || field.wireType !== WIRE_BYTES) continue;
    const version = [...fields(field.payload)].find((part) => part.number === 2 && part.wireType === WIRE_VARINT);
    imports.set(stringOf(subMessage(field.payload, 1)), version ? Number(version.value) : 0);
  }
  return imports;
}

/**
 * Replaces every attention block of the export's shape with one MultiHeadAttention node (see the top of this file)
 * and drops the nodes nothing reads any more. Models with control-flow subgraphs are returned unchanged (their
 * outer-scope reads are not tracked here).
 */
export function fuseAttention(model: Uint8Array): AttentionFusion {
  const graphBytes = subMessage(model, 7);
  if (graphBytes === null) throw new ProtobufError('not an ONNX model: no graph');
  const graph = new Graph(graphBytes);
  const softmaxes = graph.nodes.filter((node) => node.opType === 'Softmax' && node.domain === '');
  const unchanged = { model, fused: 0, skipped: softmaxes.length, nodesBefore: graph.nodes.length, nodesAfter: graph.nodes.length };
  if (graph.hasSubgraphs) return unchanged;
  const opsets = opsetImports(model);
  const opset = opsets.get('') ?? 0;
  const blocks = softmaxes.map((softmax) => matchBlock(graph, softmax, opset)).filter((block): block is AttentionBlock => block !== undefined);
  if (blocks.length === 0) return unchanged;

  // The fused node takes the place (and the output name) of each block's last Reshape, so the graph stays in
  // topological order and the block's readers need no change.
  const replacements = new Map(blocks.map((block) => [block.output.index, block]));
  const kept = new Set<number>();
  const needed = new Set(graph.graphOutputs);
  // Walk back from the graph's outputs; a replaced block reads only Q, K and V.
  for (let index = graph.nodes.length - 1; index >= 0; index--) {
    const node = graph.nodes[index]!;
    if (!node.outputs.some((output) => needed.has(output))) continue;
    kept.add(index);
    const block = replacements.get(index);
    for (const input of block ? [block.query, block.key, block.value] : node.inputs) if (input !== '') needed.add(input);
  }

  let nodeIndex = 0;
  const graphParts: Uint8Array[] = [];
  for (const field of fields(graphBytes)) {
    if (field.number !== 1 || field.wireType !== WIRE_BYTES) {
      graphParts.push(field.raw);
      continue;
    }
    const index = nodeIndex++;
    if (!kept.has(index)) continue;
    const block = replacements.get(index);
    graphParts.push(block ? new ProtoWriter().bytesField(1, multiHeadAttentionNode(block)).finish() : field.raw);
  }

  const modelParts = rewriteFields(model, 7, () => graphParts);
  // ModelProto.opset_import: OperatorSetIdProto { domain = 1, version = 2 }.
  if (!opsets.has(MICROSOFT_DOMAIN)) modelParts.push(new ProtoWriter().message(8, (opset) => opset.string(1, MICROSOFT_DOMAIN).int(2, 1)).finish());
  return {
    model: concat(modelParts),
    fused: blocks.length,
    skipped: softmaxes.length - blocks.length,
    nodesBefore: graph.nodes.length,
    nodesAfter: kept.size,
  };
}
