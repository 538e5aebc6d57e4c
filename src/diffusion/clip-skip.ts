/**
 * Clip skip (A1111's "Clip skip" / CLIP_stop_at_last_layers): the text conditioning taken from the hidden state
 * before the last N−1 encoder layers (transformers' `hidden_states[-N]`), then passed through the final layer norm,
 * as A1111 does (modules/sd_hijack_clip.py `FrozenCLIPEmbedderWithCustomWords.encode_with_transformers`). Clip skip 1
 * is the text encoder's own `last_hidden_state`.
 *
 * The exported text encoder gives only `last_hidden_state`, so at load the graph gets, for each clip skip k ≥ 2, a copy
 * of its final-layer-norm nodes fed from the input of encoder layer L−k+1 and a graph output `clip_skip_<k>` — the
 * original nodes are untouched, so `last_hidden_state` is computed exactly as before. The nodes are found by the
 * module paths the exporter writes into node names (`…/encoder/layers.<i>/layer_norm1/…`, `…/final_layer_norm/…`).
 */
import {
  concat,
  fields,
  GRAPH_NODE,
  GRAPH_OUTPUT,
  lengthDelimited,
  MODEL_GRAPH as GRAPH,
  NODE_INPUT,
  NODE_NAME,
  NODE_OUTPUT,
  rewriteFields,
  stringOf,
  subMessage,
  VALUE_INFO_NAME,
  WIRE_BYTES,
} from './onnx-proto.js';

/** The largest clip skip offered: A1111's UI allows up to 12, SD 1.5 users use 1 or 2. */
export const MAX_CLIP_SKIP = 2;

/** The graph output holding the conditioning for clip skip `k` (k ≥ 2). */
export function clipSkipOutputName(clipSkip: number): string {
  return `clip_skip_${clipSkip}`;
}

/** Whether a graph output is one the rewrite added (not part of the export's own interface). */
export function isClipSkipOutput(name: string): boolean {
  return /^clip_skip_\d+$/.test(name);
}

export class ClipSkipRewriteError extends Error {
  override name = 'ClipSkipRewriteError';
}

interface ParsedNode {
  name: string;
  inputs: string[];
  outputs: string[];
  payload: Uint8Array;
}


function parseNodes(graph: Uint8Array): ParsedNode[] {
  const nodes: ParsedNode[] = [];
  for (const field of fields(graph)) {
    if (field.number !== GRAPH_NODE || field.wireType !== WIRE_BYTES) continue;
    const node: ParsedNode = { name: '', inputs: [], outputs: [], payload: field.payload };
    for (const part of fields(field.payload)) {
      if (part.wireType !== WIRE_BYTES) continue;
      if (part.number === NODE_INPUT) node.inputs.push(stringOf(part.payload));
      else if (part.number === NODE_OUTPUT) node.outputs.push(stringOf(part.payload));
      else if (part.number === NODE_NAME) node.name = stringOf(part.payload);
    }
    nodes.push(node);
  }
  return nodes;
}

const text = (value: string) => new TextEncoder().encode(value);

/** A copy of `node` with its name, inputs and outputs mapped; attributes and the rest byte for byte. */
function renamedNode(node: ParsedNode, rename: (tensor: string) => string, suffix: string): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const field of fields(node.payload)) {
    if (field.wireType === WIRE_BYTES && (field.number === NODE_INPUT || field.number === NODE_OUTPUT)) {
      parts.push(...lengthDelimited(field.number, [text(rename(stringOf(field.payload)))]));
    } else if (field.wireType === WIRE_BYTES && field.number === NODE_NAME) {
      parts.push(...lengthDelimited(NODE_NAME, [text(`${stringOf(field.payload)}${suffix}`)]));
    } else parts.push(field.raw);
  }
  return concat(parts);
}

/** The one tensor the nodes of `group` read that none of them makes and no initializer or constant provides. */
function groupInput(group: readonly ParsedNode[], producers: ReadonlyMap<string, ParsedNode>, what: string): string {
  const inside = new Set(group.flatMap((node) => node.outputs));
  const external = new Set(group.flatMap((node) => node.inputs).filter((tensor) => !inside.has(tensor) && producers.has(tensor)));
  // Constants and aliased weights (Identity nodes of the exporter) are made by nodes too: keep the encoder's tensor.
  const fromEncoder = [...external].filter((tensor) => /\/(encoder|embeddings)\//.test(producers.get(tensor)!.name));
  if (fromEncoder.length !== 1) throw new ClipSkipRewriteError(`cannot find the input of ${what} (found ${fromEncoder.length} candidates)`);
  return fromEncoder[0]!;
}

/**
 * Adds the graph outputs `clip_skip_2` … `clip_skip_<maxClipSkip>` to a serialized CLIP text encoder (see the module
 * comment). Returns the rewritten model and the encoder's layer count; throws ClipSkipRewriteError for a graph whose
 * node names do not carry the module paths.
 */
export function exposeClipSkipOutputs(model: Uint8Array, maxClipSkip = MAX_CLIP_SKIP): { model: Uint8Array; layers: number } {
  const graph = subMessage(model, GRAPH);
  if (graph === null) throw new ClipSkipRewriteError('not an ONNX model: no graph');
  const nodes = parseNodes(graph);
  const producers = new Map<string, ParsedNode>();
  for (const node of nodes) for (const output of node.outputs) producers.set(output, node);

  const finalNorm = nodes.filter((node) => /(^|\/)final_layer_norm\//.test(node.name));
  if (finalNorm.length === 0) throw new ClipSkipRewriteError('the text encoder has no final_layer_norm nodes');
  const layerIndices = nodes.map((node) => /\/encoder\/layers\.(\d+)\//.exec(node.name)?.[1]).filter((index) => index !== undefined).map(Number);
  const layers = Math.max(-1, ...layerIndices) + 1;
  if (layers < maxClipSkip) throw new ClipSkipRewriteError(`the text encoder has ${layers} layer(s), too few for clip skip ${maxClipSkip}`);
  const finalInput = groupInput(finalNorm, producers, 'final_layer_norm');

  // The graph outputs the final norm makes (last_hidden_state), with their ValueInfo, to declare the copies' outputs.
  const finalOutputs = new Set(finalNorm.flatMap((node) => node.outputs));
  const graphOutputs = [...fields(graph)].filter((field) => field.number === GRAPH_OUTPUT && field.wireType === WIRE_BYTES);
  const normOutput = graphOutputs.find((field) => finalOutputs.has(stringOf(subMessage(field.payload, VALUE_INFO_NAME))));
  if (!normOutput) throw new ClipSkipRewriteError('no graph output comes from final_layer_norm');
  const normOutputName = stringOf(subMessage(normOutput.payload, VALUE_INFO_NAME));

  const addedNodes: Uint8Array[] = [];
  const addedOutputs: Uint8Array[] = [];
  for (let clipSkip = 2; clipSkip <= maxClipSkip; clipSkip++) {
    // hidden_states[-k] is the input of layer L−k+1 (hidden_states[0] being the embeddings, the input of layer 0).
    const layer = layers - clipSkip + 1;
    const layerNorm = nodes.filter((node) => node.name.includes(`/encoder/layers.${layer}/layer_norm1/`));
    if (layerNorm.length === 0) throw new ClipSkipRewriteError(`no layer_norm1 nodes in encoder layer ${layer}`);
    const hiddenState = groupInput(layerNorm, producers, `encoder layer ${layer}`);
    const outputName = clipSkipOutputName(clipSkip);
    const suffix = `/${outputName}`;
    const rename = (tensor: string): string => {
      if (tensor === finalInput) return hiddenState;
      if (tensor === normOutputName) return outputName;
      return finalOutputs.has(tensor) ? `${tensor}${suffix}` : tensor;
    };
    for (const node of finalNorm) addedNodes.push(concat(lengthDelimited(GRAPH_NODE, [renamedNode(node, rename, suffix)])));
    const valueInfo: Uint8Array[] = [...lengthDelimited(VALUE_INFO_NAME, [text(outputName)])];
    for (const field of fields(normOutput.payload)) if (field.number !== VALUE_INFO_NAME) valueInfo.push(field.raw);
    addedOutputs.push(concat(lengthDelimited(GRAPH_OUTPUT, valueInfo)));
  }
  // Appended after every existing node (their inputs all exist by then) and after the existing outputs.
  const rewritten = rewriteFields(model, GRAPH, (payload) => [payload, ...addedNodes, ...addedOutputs]);
  return { model: concat(rewritten), layers };
}
