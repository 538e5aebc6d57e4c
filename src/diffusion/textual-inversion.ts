/**
 * Textual-inversion embeddings (A1111's `embeddings/` folder, diffusers' `load_textual_inversion`): learned token
 * vectors a prompt names by a word. They are put IN the text encoder's graph: at load, each embedding's vectors become
 * new rows appended to the token-embedding table (the data input of `…/embeddings/token_embedding/Gather`), so each
 * vector has its own token id ≥ the vocabulary size, and the tokenizer path (`EmbeddingVocabulary`) writes those ids
 * where the prompt names the embedding. The text encoder then computes exactly what A1111's `EmbeddingsWithFixes`
 * computes by overwriting the token embeddings at those positions.
 *
 * Files (A1111's `create_embedding_from_data`, modules/textual_inversion/textual_inversion.py):
 * - `string_to_param: {'*': [vectors, width]}` — A1111's own `.pt`, and the original textual-inversion code's (there a
 *   `ParameterDict`, whose tensors are in its `_parameters`);
 * - one tensor alone in the file — `emb_params` (A1111/Civitai `.safetensors`) or diffusers' `{'<token>': vector(s)}`
 *   (`learned_embeds.bin` / `.safetensors`); a 1-D vector is one vector.
 * The name is the file's stem, as A1111 names it; the hash is the sha256 of the file, of which A1111 writes the first
 * 12 hex digits in `TI hashes` (`Embedding.set_hash`: `hashes.sha256(filename, "textual_inversion/" + name)`).
 *
 * Names are matched as A1111 matches them under both prompt syntaxes (the name's CLIP tokens in the prompt's), not as
 * diffusers' added tokens (an exact string such as `<cat-toy>`); under `plain` the vectors then take slots before the
 * 77-token truncation, as diffusers' `maybe_convert_prompt` expansion does. The encoder's `pooler_output` (the hidden
 * state at the largest id, meant to be EOS) is not meaningful for a prompt with an embedding; SD does not read it.
 * The set is read when the model loads: a file added later needs a restart.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { basename, extname, join, relative } from 'node:path';
import { toFloat16 } from './fp16.js';
import {
  concat,
  encodeVarint,
  fields,
  GRAPH_INITIALIZER,
  GRAPH_NODE,
  lengthDelimited,
  MODEL_GRAPH as GRAPH,
  NODE_INPUT,
  NODE_NAME,
  NODE_OP_TYPE,
  NODE_OUTPUT,
  ONNX_FLOAT,
  ONNX_FLOAT16,
  rewriteFields,
  stringOf,
  subMessage,
  TENSOR_DATA_LOCATION,
  TENSOR_DATA_TYPE,
  TENSOR_DIMS,
  TENSOR_FLOAT_DATA,
  TENSOR_NAME,
  TENSOR_RAW_DATA,
  WIRE_BYTES,
  WIRE_VARINT,
} from './onnx-proto.js';
import { isFileTensor, readSafetensors, readTorchFile, type FileTensor, type FileValue } from './tensor-files.js';

/** The file types read as embeddings (A1111 also reads embeddings hidden in PNG/WebP images; we do not). */
export const EMBEDDING_EXTENSIONS = ['.safetensors', '.pt', '.bin'] as const;

export class EmbeddingFileError extends Error {
  override name = 'EmbeddingFileError';
}

export class TokenEmbeddingRewriteError extends Error {
  override name = 'TokenEmbeddingRewriteError';
}

/** One embedding file, read. */
export interface TextualInversion {
  /** The word that calls it in a prompt: the file's stem (`EasyNegative.safetensors` → `EasyNegative`). */
  name: string;
  /** The file, relative to the embeddings folder. */
  file: string;
  /** How many token slots it takes. */
  vectorCount: number;
  /** The size of each vector: the text encoder's hidden size it was trained for (768 for SD 1.5). */
  width: number;
  /** vectorCount × width, row-major, float32. */
  vectors: Float32Array;
  /** sha256 of the file, hex. */
  sha256: string;
}

/** The first 12 hex digits of the file's sha256: what A1111 writes in `TI hashes` (its `Embedding.shorthash`). */
export function shortHash(embedding: Pick<TextualInversion, 'sha256'>): string {
  return embedding.sha256.slice(0, 12);
}

/** The embedding tensor of a file's content, in one of the layouts of the module comment. */
function embeddingTensor(value: FileValue): FileTensor {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || isFileTensor(value)) {
    throw new EmbeddingFileError('the file does not hold a dict of tensors');
  }
  const saved = value['string_to_param'];
  if (saved !== undefined) {
    // A ParameterDict (the original textual-inversion code) holds its tensors in `_parameters`, as A1111 reads it.
    const params = typeof saved === 'object' && saved !== null && !Array.isArray(saved) && !isFileTensor(saved) && '_parameters' in saved ? saved['_parameters'] : saved;
    if (typeof params !== 'object' || params === null || Array.isArray(params) || isFileTensor(params)) {
      throw new EmbeddingFileError('string_to_param is not a dict');
    }
    const tensors = Object.values(params);
    if (tensors.length !== 1 || !isFileTensor(tensors[0])) throw new EmbeddingFileError('embedding file has multiple terms in it');
    return tensors[0];
  }
  const entries = Object.values(value);
  if (entries.length === 1 && isFileTensor(entries[0])) return entries[0];
  if (entries.some(isFileTensor) && entries.length > 1) throw new EmbeddingFileError('embedding file has multiple terms in it');
  throw new EmbeddingFileError('neither a textual-inversion embedding (string_to_param, emb_params) nor a diffusers concept (<token>)');
}

/** Reads one embedding file's bytes (`.safetensors`, or `.pt`/`.bin` as written by torch.save). */
export function parseEmbedding(bytes: Uint8Array, file: string): TextualInversion {
  const extension = extname(file).toLowerCase();
  const content: FileValue = extension === '.safetensors' ? readSafetensors(bytes) : readTorchFile(bytes);
  const tensor = embeddingTensor(content);
  const shape = tensor.shape.length === 1 ? [1, tensor.shape[0]!] : tensor.shape;
  if (shape.length !== 2 || shape[0]! < 1 || shape[1]! < 1) throw new EmbeddingFileError(`the embedding has shape [${tensor.shape.join(', ')}], not [vectors, width]`);
  return {
    name: basename(file, extname(file)),
    file,
    vectorCount: shape[0]!,
    width: shape[1]!,
    vectors: tensor.data,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

async function filesUnder(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile() && (EMBEDDING_EXTENSIONS as readonly string[]).includes(extname(entry.name).toLowerCase()))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

export interface EmbeddingsFolder {
  embeddings: TextualInversion[];
  /** Files that could not be used, with why (also logged). */
  skipped: { file: string; reason: string }[];
}

/**
 * Reads every embedding file in a folder and its subfolders (as A1111 walks its embeddings folder). A file that cannot
 * be read, or a second file with a name already taken, is skipped with a warning: a broken download must not keep the
 * bot from starting. A missing folder is an empty one.
 */
export async function loadEmbeddingsFolder(folder: string, warn: (line: string) => void = () => {}): Promise<EmbeddingsFolder> {
  let files: string[];
  try {
    files = await filesUnder(folder);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { embeddings: [], skipped: [] };
    throw error;
  }
  const embeddings: TextualInversion[] = [];
  const skipped: EmbeddingsFolder['skipped'] = [];
  const skip = (file: string, reason: string): void => {
    skipped.push({ file, reason });
    warn(`embedding ${file} skipped: ${reason}`);
  };
  for (const path of files) {
    const file = relative(folder, path);
    let embedding: TextualInversion;
    try {
      embedding = parseEmbedding(new Uint8Array(await readFile(path)), file);
    } catch (error) {
      skip(file, (error as Error).message);
      continue;
    }
    const taken = embeddings.find((other) => other.name === embedding.name);
    if (taken) skip(file, `the name ${embedding.name} is already taken by ${taken.file}`);
    else embeddings.push(embedding);
  }
  return { embeddings, skipped };
}

/** The folder the embeddings are read from: the configured one, else the model folder's `embeddings/`. */
export function embeddingsFolderFor(configured: string | undefined, modelFolder: string): string {
  return configured ? configured : join(modelFolder, 'embeddings');
}

// --- the graph rewrite ---------------------------------------------------------------------------------------------


/** The token-embedding table of a CLIP text encoder, as stored. */
export interface TokenEmbeddingTable {
  initializer: string;
  /** Rows: the vocabulary size the export was made with (49408 for SD 1.5). */
  rows: number;
  width: number;
  dtype: 'float32' | 'float16';
}

interface Initializer {
  name: string;
  dims: number[];
  dataType: number;
  /** The TensorProto's own bytes. */
  payload: Uint8Array;
}

function readInitializer(payload: Uint8Array): Initializer {
  const initializer: Initializer = { name: '', dims: [], dataType: 0, payload };
  for (const field of fields(payload)) {
    if (field.number === TENSOR_NAME && field.wireType === WIRE_BYTES) initializer.name = stringOf(field.payload);
    else if (field.number === TENSOR_DATA_TYPE && field.wireType === WIRE_VARINT) initializer.dataType = Number(field.value);
    else if (field.number === TENSOR_DIMS && field.wireType === WIRE_VARINT) initializer.dims.push(Number(field.value));
    else if (field.number === TENSOR_DIMS && field.wireType === WIRE_BYTES) {
      // packed repeated int64
      for (let position = 0; position < field.payload.length; ) {
        let value = 0n;
        let shift = 0n;
        for (;;) {
          const byte = field.payload[position++]!;
          value |= BigInt(byte & 0x7f) << shift;
          if ((byte & 0x80) === 0) break;
          shift += 7n;
        }
        initializer.dims.push(Number(value));
      }
    }
  }
  return initializer;
}

/** The initializer the token-embedding Gather reads (through the exporter's Identity aliases), found by node name. */
function findTokenEmbedding(graph: Uint8Array): Initializer {
  const producers = new Map<string, { op: string; inputs: string[] }>();
  let gatherInput: string | undefined;
  for (const field of fields(graph)) {
    if (field.number !== GRAPH_NODE || field.wireType !== WIRE_BYTES) continue;
    let name = '';
    let op = '';
    const inputs: string[] = [];
    const outputs: string[] = [];
    for (const part of fields(field.payload)) {
      if (part.wireType !== WIRE_BYTES) continue;
      if (part.number === NODE_INPUT) inputs.push(stringOf(part.payload));
      else if (part.number === NODE_OUTPUT) outputs.push(stringOf(part.payload));
      else if (part.number === NODE_NAME) name = stringOf(part.payload);
      else if (part.number === NODE_OP_TYPE) op = stringOf(part.payload);
    }
    for (const output of outputs) producers.set(output, { op, inputs });
    if (op === 'Gather' && /(^|\/)token_embedding\/Gather$/.test(name)) gatherInput = inputs[0];
  }
  if (gatherInput === undefined) throw new TokenEmbeddingRewriteError('the text encoder has no …/token_embedding/Gather node');
  let tensor = gatherInput;
  for (let producer = producers.get(tensor); producer?.op === 'Identity'; producer = producers.get(tensor)) tensor = producer.inputs[0]!;
  for (const field of fields(graph)) {
    if (field.number !== GRAPH_INITIALIZER || field.wireType !== WIRE_BYTES) continue;
    const initializer = readInitializer(field.payload);
    if (initializer.name === tensor) return initializer;
  }
  throw new TokenEmbeddingRewriteError(`the token-embedding Gather reads ${tensor}, which is not a stored weight`);
}

function tableOf(initializer: Initializer): TokenEmbeddingTable {
  const dtype = initializer.dataType === ONNX_FLOAT ? 'float32' : initializer.dataType === ONNX_FLOAT16 ? 'float16' : null;
  if (dtype === null || initializer.dims.length !== 2) {
    throw new TokenEmbeddingRewriteError(`the token-embedding table ${initializer.name} is not a float32/float16 matrix`);
  }
  return { initializer: initializer.name, rows: initializer.dims[0]!, width: initializer.dims[1]!, dtype };
}

/** The token-embedding table of a serialized CLIP text encoder (its size decides the new ids and which embeddings fit). */
export function tokenEmbeddingTable(model: Uint8Array): TokenEmbeddingTable {
  const graph = subMessage(model, GRAPH);
  if (graph === null) throw new TokenEmbeddingRewriteError('not an ONNX model: no graph');
  return tableOf(findTokenEmbedding(graph));
}

/**
 * Appends `rows` (n × width float32, row-major) to the token-embedding table of a serialized CLIP text encoder: token
 * id `table.rows + i` then reads row i. A bytes → bytes step, composable with the other load-time rewrites; everything
 * but that one initializer is kept byte for byte. The table must be stored in the file (not as external data).
 */
export function appendTokenEmbeddings(model: Uint8Array, rows: Float32Array): { model: Uint8Array; table: TokenEmbeddingTable } {
  const graph = subMessage(model, GRAPH);
  if (graph === null) throw new TokenEmbeddingRewriteError('not an ONNX model: no graph');
  const initializer = findTokenEmbedding(graph);
  const table = tableOf(initializer);
  if (rows.length % table.width !== 0) throw new TokenEmbeddingRewriteError(`the rows are not a multiple of the width ${table.width}`);
  const added = rows.length / table.width;
  let stored: Uint8Array | null = null;
  for (const field of fields(initializer.payload)) {
    if (field.number === TENSOR_RAW_DATA && field.wireType === WIRE_BYTES) stored = field.payload;
    else if (field.number === TENSOR_FLOAT_DATA && field.wireType === WIRE_BYTES && table.dtype === 'float32') stored = field.payload;
    else if (field.number === TENSOR_DATA_LOCATION && field.value === 1n) {
      throw new TokenEmbeddingRewriteError(`the token-embedding table ${table.initializer} is stored as external data, which this rewrite does not read`);
    }
  }
  const expectedBytes = table.rows * table.width * (table.dtype === 'float32' ? 4 : 2);
  if (stored === null || stored.length !== expectedBytes) throw new TokenEmbeddingRewriteError(`the token-embedding table ${table.initializer} has no raw data of its size`);
  const addedBytes = table.dtype === 'float32' ? new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength) : new Uint8Array(toFloat16(rows).buffer);
  const replacement = concat([
    ...lengthDelimited(TENSOR_DIMS, [encodeVarint(table.rows + added), encodeVarint(table.width)]),
    encodeVarint((TENSOR_DATA_TYPE << 3) | WIRE_VARINT),
    encodeVarint(table.dtype === 'float32' ? ONNX_FLOAT : ONNX_FLOAT16),
    ...lengthDelimited(TENSOR_NAME, [new TextEncoder().encode(table.initializer)]),
    ...lengthDelimited(TENSOR_RAW_DATA, [stored, addedBytes]),
  ]);
  const rewritten = rewriteFields(model, GRAPH, (graphPayload) =>
    // The same bytes of the same buffer: the table found above.
    rewriteFields(graphPayload, GRAPH_INITIALIZER, (payload) => [payload.byteOffset === initializer.payload.byteOffset ? replacement : payload]),
  );
  return { model: concat(rewritten), table };
}

// --- the tokenizer side --------------------------------------------------------------------------------------------

/** An embedding found in a prompt's tokens: the ids to write in its place and how many prompt tokens it replaces. */
export interface EmbeddingMatch {
  name: string;
  ids: number[];
  tokenLength: number;
}

/** Finds embeddings in token sequences; `placeTextualInversions` builds it, the prompt tokenizers use it. */
export interface EmbeddingMatcher {
  /** The embedding whose name's tokens start at `tokens[position]` (the longest such name), or null. */
  findAt(tokens: readonly number[], position: number): EmbeddingMatch | null;
}

/**
 * The embeddings the text encoder holds, by the token ids of their names. A name matches where the prompt's tokens
 * contain its tokens, as A1111's `EmbeddingDatabase.find_embedding_at_position` matches (so, through CLIP's lowercasing
 * tokenizer, `easynegative` calls `EasyNegative`), the longest name first.
 */
export class EmbeddingVocabulary implements EmbeddingMatcher {
  private readonly byFirstToken = new Map<number, { nameTokens: number[]; match: EmbeddingMatch }[]>();
  readonly embeddings: readonly (TextualInversion & { ids: number[] })[];

  constructor(embeddings: readonly (TextualInversion & { ids: number[] })[], tokenize: (text: string) => number[]) {
    this.embeddings = embeddings;
    for (const embedding of embeddings) {
      const nameTokens = tokenize(embedding.name);
      const first = nameTokens[0];
      if (first === undefined) continue;
      const candidates = this.byFirstToken.get(first) ?? [];
      candidates.push({ nameTokens, match: { name: embedding.name, ids: embedding.ids, tokenLength: nameTokens.length } });
      candidates.sort((a, b) => b.nameTokens.length - a.nameTokens.length);
      this.byFirstToken.set(first, candidates);
    }
  }

  static readonly empty = new EmbeddingVocabulary([], () => []);

  findAt(tokens: readonly number[], position: number): EmbeddingMatch | null {
    const candidates = this.byFirstToken.get(tokens[position]!);
    if (!candidates) return null;
    for (const { nameTokens, match } of candidates) {
      if (nameTokens.every((token, i) => tokens[position + i] === token)) return match;
    }
    return null;
  }

  /** The embedding of that name, for its hash. */
  get(name: string): (TextualInversion & { ids: number[] }) | undefined {
    return this.embeddings.find((embedding) => embedding.name === name);
  }
}

/**
 * Plans the embeddings for a text encoder: those of the encoder's width, in order, each given ids from the table's
 * size up. Returns the graph edit (bytes → bytes, `appendTokenEmbeddings`) and a function that makes the vocabulary
 * once the edit has run; embeddings of another width (e.g. SD 2 or SDXL ones) are skipped with a warning, as A1111
 * skips them (`skipped_embeddings`).
 */
export function placeTextualInversions(
  embeddings: readonly TextualInversion[],
  warn: (line: string) => void,
): { edit: (model: Uint8Array) => Uint8Array; vocabulary: (tokenize: (text: string) => number[]) => EmbeddingVocabulary } {
  let placed: (TextualInversion & { ids: number[] })[] = [];
  return {
    edit(model) {
      const table = tokenEmbeddingTable(model);
      const fitting = embeddings.filter((embedding) => {
        if (embedding.width === table.width) return true;
        warn(`embedding ${embedding.file} skipped: its vectors have width ${embedding.width}, the text encoder's ${table.width} (made for another model)`);
        return false;
      });
      let next = table.rows;
      placed = fitting.map((embedding) => {
        const ids = Array.from({ length: embedding.vectorCount }, (_, i) => next + i);
        next += embedding.vectorCount;
        return { ...embedding, ids };
      });
      if (placed.length === 0) return model;
      return appendTokenEmbeddings(model, concatFloats(placed.map((embedding) => embedding.vectors))).model;
    },
    vocabulary: (tokenize) => new EmbeddingVocabulary(placed, tokenize),
  };
}

function concatFloats(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
