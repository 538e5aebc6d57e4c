/**
 * The text conditioning of the UNet: prompt and negative prompt through the CLIP text encoder in one call, as
 * diffusers does (`plain`) or as A1111 does (`a1111`: weighted tokens in 77-token chunks, prompt/index.ts).
 */
import type { Tensor } from 'onnxruntime-node';
import { clipSkipOutputName } from './clip-skip.js';
import { InvalidRequestError } from './errors.js';
import type { ModelPart, StableDiffusionModel } from './model.js';
import {
  encodePromptChunks,
  encodeWeightedChunks,
  tokenizePrompt,
  type PromptSyntax,
  type PromptTokens,
  type RunTextEncoder,
} from './prompt/index.js';
import { readFloats, TensorFeeder } from './tensors.js';
import { EmbeddingVocabulary, shortHash } from './textual-inversion.js';

/** What the user is told about the prompt's length: "92/150 tokens", and what `plain` dropped. */
export type PromptTokenCount = Pick<PromptTokens, 'tokenCount' | 'capacity' | 'droppedTokenCount' | 'droppedText'>;

export interface TextConditioning {
  /** Flat embeddings of [negative × n, prompt × n] (or prompt × n without guidance). */
  embeddings: Float32Array;
  /** Their dims: [rows, sequence length, width]; the sequence is 77 under `plain`, 77 × chunks under `a1111`. */
  dims: number[];
  /** The prompt's token count under the syntax used. */
  promptTokens: PromptTokenCount;
  /** The textual-inversion embeddings used (the prompt's, then the negative prompt's), for `TI hashes`. */
  textualInversions: { name: string; hash: string }[];
}

/**
 * The text encoder as a RunTextEncoder: rows of token ids in, its last hidden state as float32 out — or, for clip
 * skip k ≥ 2, the output the load-time rewrite added for it (clip-skip.ts).
 */
export function textEncoderRunner(textEncoder: ModelPart, clipSkip = 1): RunTextEncoder {
  const { session } = textEncoder;
  const outputName = clipSkip > 1 ? clipSkipOutputName(clipSkip) : session.outputNames[0]!;
  if (!session.outputNames.includes(outputName)) {
    throw new InvalidRequestError(`clip skip ${clipSkip} is not available: ${textEncoder.file} was not given its output at load (see the load log).`);
  }
  return async (ids, rows) => {
    const feeds = { input_ids: TensorFeeder.forInput(session, 'input_ids', [rows, ids.length / rows]).setInts(ids) };
    // Clip skip fetches only its own output; the default run stays the export's own call, as diffusers makes it.
    const outputs = clipSkip > 1 ? await session.run(feeds, [outputName]) : await session.run(feeds);
    const hidden = outputs[outputName] as Tensor;
    const [rowCount, sequence, dim] = hidden.dims as [number, number, number];
    return { hidden: readFloats(hidden, new Float32Array(rowCount * sequence * dim)), dim };
  };
}

/** Text embeddings for [negative × n, prompt × n] (or prompt × n without guidance), flat, plus their dims. */
export async function encodeText(
  model: Pick<StableDiffusionModel, 'tokenizer' | 'textEncoder' | 'embeddings'>,
  prompt: string,
  negativePrompt: string,
  batch: number,
  withGuidance: boolean,
  syntax: PromptSyntax = 'plain',
  clipSkip = 1,
): Promise<TextConditioning> {
  const { tokenizer } = model;
  const vocabulary = model.embeddings ?? EmbeddingVocabulary.empty;
  const used: string[] = [];
  const runTextEncoder = textEncoderRunner(model.textEncoder, clipSkip);
  let encoded: Float32Array;
  let rowCount: number;
  let sequence: number;
  let width: number;
  let promptTokens: PromptTokenCount;
  if (syntax === 'plain') {
    // diffusers: each prompt as one row of 77 ids, both rows in one text-encoder call.
    // (tokenizer.encode(text), with the embeddings' ids in place of their names.)
    const positive = tokenizePrompt(tokenizer, prompt, syntax, vocabulary);
    const halves = withGuidance ? [tokenizePrompt(tokenizer, negativePrompt, syntax, vocabulary), positive] : [positive];
    const rows = halves.map((half) => half.chunks[0]!.ids);
    const flatIds = new Int32Array(rows.length * tokenizer.maxLength);
    rows.forEach((row, r) => flatIds.set(row, r * tokenizer.maxLength));
    const { hidden, dim } = await runTextEncoder(flatIds, rows.length);
    [encoded, rowCount, sequence, width] = [hidden, rows.length, tokenizer.maxLength, dim];
    const { tokenCount, capacity, droppedTokenCount, droppedText } = positive;
    promptTokens = { tokenCount, capacity, droppedTokenCount, droppedText };
    used.push(...positive.embeddings, ...(halves.length > 1 ? halves[0]!.embeddings : []));
  } else {
    // A1111: the negative prompt padded to the prompt's chunk count (and the other way round) so both halves have
    // the same sequence length; all chunks of both go through the encoder in one call. The emphasis works chunk by
    // chunk, so the negative prompt's chunks followed by the prompt's read as two rows of chunks × 77 tokens.
    const tokens = withGuidance
      ? encodePromptChunks(tokenizer, prompt, negativePrompt, syntax, vocabulary)
      : { prompt: tokenizePrompt(tokenizer, prompt, syntax, vocabulary) };
    const halves = 'negative' in tokens ? [tokens.negative, tokens.prompt] : [tokens.prompt];
    const { embeddings, dims } = await encodeWeightedChunks(
      runTextEncoder,
      halves.flatMap((half) => half.chunks),
    );
    [encoded, rowCount, sequence, width] = [embeddings, halves.length, dims[1] / halves.length, dims[2]];
    const { tokenCount, capacity, droppedTokenCount, droppedText } = tokens.prompt;
    promptTokens = { tokenCount, capacity, droppedTokenCount, droppedText };
    used.push(...tokens.prompt.embeddings, ...('negative' in tokens ? tokens.negative.embeddings : []));
  }
  const perRow = sequence * width;
  // Repeat each row n times: [neg × n, prompt × n], the order diffusers concatenates for guidance.
  const embeddings = new Float32Array(rowCount * batch * perRow);
  for (let r = 0; r < rowCount; r++) {
    const row = encoded.subarray(r * perRow, (r + 1) * perRow);
    for (let i = 0; i < batch; i++) embeddings.set(row, (r * batch + i) * perRow);
  }
  const textualInversions = [...new Set(used)].map((name) => ({ name, hash: shortHash(vocabulary.get(name)!) }));
  return { embeddings, dims: [rowCount * batch, sequence, width], promptTokens, textualInversions };
}
