/**
 * Merging LoRAs into an exported model's weights at load time: W' = W + Σ multiplier · (alpha / rank) · up · down,
 * as A1111 (extensions-builtin/Lora, network_lora.py) and diffusers' `fuse_lora` compute it, on the serialized ONNX
 * model (onnx-proto.ts), before ONNX Runtime opens it.
 *
 * The exporter keeps module paths in node names, not in weight names (`onnx::MatMul_2560` is the weight of node
 * `/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul`), so each MatMul / Conv / Gemm whose second
 * input is an initializer gives the index "module path → initializer". Layouts: MatMul weights are stored
 * transposed ([in, out]), Gemm as its transB says, Conv as [out, in, kh, kw]; a LoRA's up · down is [out, in·kh·kw]
 * (a 1×1 or 3×3 conv LoRA: down [r, in, kh, kw], up [out, r, 1, 1]).
 *
 * Only the initializers a LoRA touches are rewritten, as inline `raw_data` (in their own dtype, float32 or float16);
 * all others stay as they are, external data included (`unet/weights.pb` is read for the touched ones only and never
 * written: ORT finds the rest through `model_external_initializers_file_folder_path`, see providers.ts).
 */
import { open } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import * as ort from 'onnxruntime-node';
import { toFloat16, toFloat32 } from '../fp16.js';
import { buildModel } from '../onnx-builder.js';
import {
  ATTRIBUTE_NAME,
  concat,
  fields,
  GRAPH_INITIALIZER,
  GRAPH_NODE,
  lengthDelimited,
  MODEL_GRAPH,
  NODE_ATTRIBUTE,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  ONNX_FLOAT,
  ONNX_FLOAT16,
  readVarint,
  rewriteFields,
  stringOf,
  subMessage,
  TENSOR_DATA_LOCATION,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_EXTERNAL_DATA,
  TENSOR_FLOAT_DATA,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
  WIRE_BYTES,
} from '../onnx-proto.js';
import { kohyaModuleName, type LoraTarget, type LoraWeights } from './keys.js';

export class LoraMergeError extends Error {
  override name = 'LoraMergeError';
}

/** One LoRA to merge, with the multiplier for this part (A1111's te / unet multipliers). */
export interface LoraToMerge {
  name: string;
  weights: LoraWeights;
  multiplier: number;
}

export interface LoraMergeResult {
  model: Uint8Array;
  /** Modules merged, over all LoRAs. */
  mergedModules: number;
  /** Per LoRA, its modules for this part that the model has no weight for (or whose shapes do not fit), with why. */
  unmatched: Array<{ lora: string; module: string; reason: string }>;
}


/** How a weight initializer is laid out: [in, out] (MatMul, Gemm without transB) or [out, …] (Conv, Gemm transB). */
export type Layout = 'in-out' | 'out-in';

interface WeightRef {
  initializer: string;
  layout: Layout;
}

interface Initializer {
  dims: number[];
  dataType: number;
  payload: Uint8Array;
}

function varintsOf(field: { wireType: number; payload: Uint8Array; value: bigint }): number[] {
  if (field.wireType !== WIRE_BYTES) return [Number(field.value)];
  // Packed repeated int64.
  const values: number[] = [];
  for (let position = 0; position < field.payload.length; ) {
    const { value, end } = readVarint(field.payload, position);
    values.push(Number(value));
    position = end;
  }
  return values;
}

function parseInitializer(payload: Uint8Array): Initializer & { name: string } {
  const dims: number[] = [];
  let dataType = 0;
  let name = '';
  for (const field of fields(payload)) {
    if (field.number === TENSOR_DIMS) dims.push(...varintsOf(field));
    else if (field.number === TENSOR_DATA_TYPE) dataType = Number(field.value);
    else if (field.number === TENSOR_NAME) name = stringOf(field.payload);
  }
  return { dims, dataType, name, payload };
}

function gemmTransB(node: Uint8Array): boolean {
  for (const field of fields(node)) {
    if (field.number !== NODE_ATTRIBUTE || field.wireType !== WIRE_BYTES) continue;
    if (stringOf(subMessage(field.payload, ATTRIBUTE_NAME)) !== 'transB') continue;
    for (const part of fields(field.payload)) if (part.number === 3) return part.value !== 0n; // AttributeProto.i
  }
  return false;
}

/** module path in kohya form → the initializer holding its weight, from the node names. */
function weightIndex(graph: Uint8Array, initializers: ReadonlyMap<string, Initializer>, target: LoraTarget): Map<string, WeightRef> {
  const index = new Map<string, WeightRef>();
  for (const field of fields(graph)) {
    if (field.number !== GRAPH_NODE || field.wireType !== WIRE_BYTES) continue;
    let name = '';
    let op = '';
    const inputs: string[] = [];
    for (const part of fields(field.payload)) {
      if (part.wireType !== WIRE_BYTES) continue;
      if (part.number === NODE_INPUT) inputs.push(stringOf(part.payload));
      else if (part.number === NODE_NAME) name = stringOf(part.payload);
      else if (part.number === NODE_OP_TYPE) op = stringOf(part.payload);
    }
    if (op !== 'MatMul' && op !== 'Conv' && op !== 'Gemm') continue;
    const weight = inputs[1];
    if (weight === undefined || !initializers.has(weight)) continue;
    const segments = name.replace(/^\//, '').split('/');
    if (segments.length < 2) continue;
    const module = kohyaModuleName(target, segments.slice(0, -1).join('.'));
    const layout: Layout = op === 'Conv' || (op === 'Gemm' && gemmTransB(field.payload)) ? 'out-in' : 'in-out';
    index.set(module, { initializer: weight, layout });
  }
  return index;
}

/** An initializer's values as float32: inline raw_data / float_data, or its bytes in the external data file. */
async function readInitializer(init: Initializer & { name: string }, externalFolder: string): Promise<Float32Array> {
  const count = init.dims.reduce((product, dim) => product * dim, 1);
  const bytesPer = init.dataType === ONNX_FLOAT ? 4 : init.dataType === ONNX_FLOAT16 ? 2 : 0;
  if (bytesPer === 0) throw new LoraMergeError(`weight ${init.name} has ONNX data type ${init.dataType}; only float32 and float16 weights can be merged`);
  let raw: Uint8Array | null = null;
  const external: Record<string, string> = {};
  let location = 0;
  for (const field of fields(init.payload)) {
    if (field.number === TENSOR_RAW_DATA) raw = field.payload.slice();
    else if (field.number === TENSOR_FLOAT_DATA && init.dataType === ONNX_FLOAT) raw = field.payload.slice();
    else if (field.number === TENSOR_DATA_LOCATION) location = Number(field.value);
    else if (field.number === TENSOR_EXTERNAL_DATA) external[stringOf(subMessage(field.payload, 1))] = stringOf(subMessage(field.payload, 2));
  }
  if (location === 1) {
    const file = external['location'];
    if (!file || isAbsolute(file) || normalize(file).startsWith('..')) throw new LoraMergeError(`weight ${init.name} has no usable external data location`);
    const offset = Number(external['offset'] ?? 0);
    const length = Number(external['length'] ?? count * bytesPer);
    raw = new Uint8Array(length);
    const handle = await open(join(externalFolder, file), 'r');
    try {
      const { bytesRead } = await handle.read(raw, 0, length, offset);
      if (bytesRead !== length) throw new LoraMergeError(`weight ${init.name}: external data file ${file} is truncated`);
    } finally {
      await handle.close();
    }
  }
  if (raw === null || raw.length !== count * bytesPer) throw new LoraMergeError(`weight ${init.name} has no readable data`);
  const aligned = raw.byteOffset % 4 === 0 ? raw : raw.slice();
  return bytesPer === 4 ? new Float32Array(aligned.buffer, aligned.byteOffset, count) : toFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, count));
}

/** The initializer again with `values` as raw_data (in its own dtype) instead of whatever held its data. */
function rewrittenInitializer(init: Initializer, values: Float32Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const field of fields(init.payload)) {
    if ([TENSOR_RAW_DATA, TENSOR_FLOAT_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION].includes(field.number)) continue;
    parts.push(field.raw);
  }
  const data = init.dataType === ONNX_FLOAT16 ? toFloat16(values) : values;
  parts.push(...lengthDelimited(TENSOR_RAW_DATA, [new Uint8Array(data.buffer, data.byteOffset, data.byteLength)]));
  return concat(parts);
}

/**
 * W + up · down computed by ONNX Runtime's CPU Gemm (multithreaded and vectorised: a rank-128 SD 1.5 LoRA is tens of
 * GFLOP, minutes in a JavaScript loop), in the weight's layout, with W as Gemm's C (beta 1): for [in, out] weights
 * Gemm(down, up, W, transA, transB) = downᵀ · upᵀ + W = (up · down)ᵀ + W; for [out, in·kh·kw] ones
 * Gemm(up, down, W). One small session per layout, kept for the process.
 */
const mergeSessions = new Map<Layout, Promise<ort.InferenceSession>>();

function mergeSession(layout: Layout): Promise<ort.InferenceSession> {
  let session = mergeSessions.get(layout);
  if (!session) {
    const weightShape = layout === 'in-out' ? ['inner', 'out'] : ['out', 'inner'];
    const model = buildModel({
      inputs: [
        { name: 'up', type: 'float32', shape: ['out', 'rank'] },
        { name: 'down', type: 'float32', shape: ['rank', 'inner'] },
        { name: 'weight', type: 'float32', shape: weightShape },
      ],
      outputs: [{ name: 'merged', type: 'float32', shape: weightShape }],
      nodes: [
        layout === 'in-out'
          ? { opType: 'Gemm', inputs: ['down', 'up', 'weight'], outputs: ['merged'], attributes: { transA: 1, transB: 1 } }
          : { opType: 'Gemm', inputs: ['up', 'down', 'weight'], outputs: ['merged'] },
      ],
    });
    session = ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
    // A failed open is not kept: the next merge tries again.
    session.catch(() => mergeSessions.delete(layout));
    mergeSessions.set(layout, session);
  }
  return session;
}

/**
 * weight + scale · up · down, as a new array. `outDim` is the module's output size; the weight holds outDim × inner
 * values, inner = in (· kh · kw); `layout` says whether it is stored [in, out] or [out, inner].
 */
export async function plusLowRankProduct(weight: Float32Array, layout: Layout, outDim: number, up: Float32Array, down: Float32Array, rank: number, scale: number): Promise<Float32Array> {
  const inner = weight.length / outDim;
  // The scale goes into up (out × rank values): Gemm's alpha is a float attribute, and this is as exact.
  const scaledUp = scale === 1 ? up : up.map((value) => value * scale);
  const session = await mergeSession(layout);
  const outputs = await session.run({
    up: new ort.Tensor('float32', scaledUp, [outDim, rank]),
    down: new ort.Tensor('float32', down, [rank, inner]),
    weight: new ort.Tensor('float32', weight, layout === 'in-out' ? [inner, outDim] : [outDim, inner]),
  });
  return outputs['merged']!.data as Float32Array;
}

/**
 * Merges `loras` into the part `target` of a serialized model (see the module comment). `externalFolder` is where the
 * model's external data files are (the model file's folder). LoRAs with multiplier 0 are skipped.
 */
export async function mergeLoras(model: Uint8Array, externalFolder: string, target: LoraTarget, loras: readonly LoraToMerge[]): Promise<LoraMergeResult> {
  const graph = subMessage(model, MODEL_GRAPH);
  if (graph === null) throw new LoraMergeError('not an ONNX model: no graph');
  const initializers = new Map<string, Initializer & { name: string }>();
  for (const field of fields(graph)) {
    if (field.number === GRAPH_INITIALIZER && field.wireType === WIRE_BYTES) {
      const init = parseInitializer(field.payload);
      initializers.set(init.name, init);
    }
  }
  const index = weightIndex(graph, initializers, target);
  const merged = new Map<string, Float32Array>();
  const unmatched: LoraMergeResult['unmatched'] = [];
  let mergedModules = 0;
  for (const lora of loras) {
    if (lora.multiplier === 0) continue;
    for (const module of lora.weights.modules) {
      if (module.target !== target) continue;
      const ref = index.get(module.module);
      if (!ref) {
        unmatched.push({ lora: lora.name, module: module.module, reason: 'no such module in the model' });
        continue;
      }
      const init = initializers.get(ref.initializer)!;
      const outDim = ref.layout === 'in-out' ? init.dims[init.dims.length - 1]! : init.dims[0]!;
      const total = init.dims.reduce((product, dim) => product * dim, 1);
      const rank = module.down.shape[0] ?? 0;
      const upCount = module.up.shape.reduce((product, dim) => product * dim, 1);
      const downCount = module.down.shape.reduce((product, dim) => product * dim, 1);
      if (rank === 0 || module.up.shape[0] !== outDim || upCount !== outDim * rank || downCount * outDim !== total * rank) {
        unmatched.push({
          lora: lora.name,
          module: module.module,
          reason: `shapes do not fit: weight [${init.dims.join(', ')}], down [${module.down.shape.join(', ')}], up [${module.up.shape.join(', ')}]`,
        });
        continue;
      }
      const values = merged.get(ref.initializer) ?? (await readInitializer(init, externalFolder));
      const scale = lora.multiplier * (module.alpha === null ? 1 : module.alpha / rank);
      merged.set(ref.initializer, await plusLowRankProduct(values, ref.layout, outDim, module.up.values(), module.down.values(), rank, scale));
      mergedModules++;
    }
  }
  if (merged.size === 0) return { model, mergedModules, unmatched };
  const rewritten = rewriteFields(model, MODEL_GRAPH, (payload) => {
    const parts: Uint8Array[] = [];
    for (const field of fields(payload)) {
      const init = field.number === GRAPH_INITIALIZER && field.wireType === WIRE_BYTES ? parseInitializer(field.payload) : null;
      const values = init ? merged.get(init.name) : undefined;
      if (init && values) parts.push(...lengthDelimited(GRAPH_INITIALIZER, [rewrittenInitializer(init, values)]));
      else parts.push(field.raw);
    }
    return parts;
  });
  return { model: concat(rewritten), mergedModules, unmatched };
}

/** The values of one initializer of a serialized model as float32 (for checks and tools); null when absent. */
export async function readModelInitializer(model: Uint8Array, externalFolder: string, name: string): Promise<Float32Array | null> {
  const graph = subMessage(model, MODEL_GRAPH);
  if (graph === null) throw new LoraMergeError('not an ONNX model: no graph');
  for (const field of fields(graph)) {
    if (field.number !== GRAPH_INITIALIZER || field.wireType !== WIRE_BYTES) continue;
    const init = parseInitializer(field.payload);
    if (init.name === name) return readInitializer(init, externalFolder);
  }
  return null;
}
