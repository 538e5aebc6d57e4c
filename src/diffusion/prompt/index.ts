import type { EmbeddingMatcher } from '../textual-inversion.js';
import type { ClipTokenizer } from '../tokenizer.js';
import { parsePromptAttention } from './a1111-parser.js';
import { chunkCapacity, chunkFragments, COMMA_PADDING_BACKTRACK, type ChunkLayout, type PromptChunk } from './chunker.js';
import { applyOriginalEmphasisToChunks } from './emphasis.js';

export { parsePromptAttention, isBreakMarker, type WeightedFragment } from './a1111-parser.js';
export { chunkFragments, chunkCapacity, COMMA_PADDING_BACKTRACK, type PromptChunk, type ChunkLayout } from './chunker.js';
export { applyOriginalEmphasis, applyOriginalEmphasisToChunks } from './emphasis.js';

/**
 * How prompt text becomes text-encoder input:
 * - `a1111`: A1111's syntax — `(word:1.2)` weights, `BREAK`, prompts longer than 75 tokens in 77-token chunks.
 * - `plain`: diffusers' behaviour — the text literally, truncated at 77 tokens (BOS and EOS included).
 */
export const PROMPT_SYNTAXES = ['a1111', 'plain'] as const;
export type PromptSyntax = (typeof PROMPT_SYNTAXES)[number];

/** A prompt as text-encoder rows, with what the user is told about its length. */
export interface PromptTokens {
  /** One row each of `maxLength` ids and weights; encode each, apply the emphasis, concatenate along the sequence. */
  chunks: PromptChunk[];
  /** Tokens the prompt uses (A1111's count under `a1111`; every prompt token, dropped ones included, under `plain`). */
  tokenCount: number;
  /** Tokens the chunks hold: A1111's 75 per chunk under `a1111`, the 75 diffusers keeps under `plain`. */
  capacity: number;
  /** Prompt tokens `plain` cut off at the end (always 0 under `a1111`, which never truncates). */
  droppedTokenCount: number;
  /** Those tokens as text, as diffusers' truncation warning shows them ('' when none). */
  droppedText: string;
  /** The textual-inversion embeddings used, by name, in order of first use (under `plain`, those the truncation left in). */
  embeddings: string[];
}

function chunkLayout(tokenizer: ClipTokenizer): ChunkLayout {
  return {
    chunkLength: tokenizer.maxLength - 2,
    bosTokenId: tokenizer.bosTokenId,
    eosTokenId: tokenizer.eosTokenId,
    commaTokenId: tokenizer.tokenId(',</w>'),
    commaPaddingBacktrack: COMMA_PADDING_BACKTRACK,
  };
}

/**
 * The prompt's tokens under `plain` with embeddings in place: each name found (`EmbeddingMatcher`) replaced by its
 * vector ids, as diffusers' `maybe_convert_prompt` expands a multi-vector token before tokenizing.
 */
function plainTokensWithEmbeddings(tokens: readonly number[], embeddings: EmbeddingMatcher): { ids: number[]; used: { name: string; start: number }[] } {
  const ids: number[] = [];
  const used: { name: string; start: number }[] = [];
  for (let position = 0; position < tokens.length; ) {
    const embedding = embeddings.findAt(tokens, position);
    if (embedding === null) {
      ids.push(tokens[position]!);
      position++;
      continue;
    }
    used.push({ name: embedding.name, start: ids.length });
    ids.push(...embedding.ids);
    position += embedding.tokenLength;
  }
  return { ids, used };
}

/**
 * Tokenizes one prompt under a syntax into text-encoder rows and its token count. With `embeddings`, a
 * textual-inversion embedding's name takes its vectors' slots under both syntaxes (A1111's rule under `a1111`; under
 * `plain`, diffusers' `load_textual_inversion` behaviour: the vectors count as tokens and are truncated like them).
 */
export function tokenizePrompt(tokenizer: ClipTokenizer, prompt: string, syntax: PromptSyntax, embeddings?: EmbeddingMatcher): PromptTokens {
  const chunkLength = tokenizer.maxLength - 2;
  if (syntax === 'plain') {
    const textIds = tokenizer.tokenize(prompt);
    const { ids: promptIds, used } = embeddings ? plainTokensWithEmbeddings(textIds, embeddings) : { ids: textIds, used: [] };
    const dropped = promptIds.slice(chunkLength);
    // Embedding ids are not in the vocabulary: the dropped text shows only the words among them.
    const droppedWords = dropped.filter((id) => textIds.includes(id));
    let row: Int32Array;
    if (used.length === 0) row = tokenizer.encode(prompt);
    else {
      // tokenizer.encode's layout (BOS, the first 75 tokens, EOS, padding) with the embeddings' ids in place.
      row = new Int32Array(tokenizer.maxLength).fill(tokenizer.padTokenId);
      row[0] = tokenizer.bosTokenId;
      row.set(promptIds.slice(0, chunkLength), 1);
      row[Math.min(promptIds.length, chunkLength) + 1] = tokenizer.eosTokenId;
    }
    return {
      chunks: [{ ids: row, weights: new Float32Array(tokenizer.maxLength).fill(1) }],
      tokenCount: promptIds.length,
      capacity: chunkLength,
      droppedTokenCount: dropped.length,
      droppedText: droppedWords.length > 0 ? tokenizer.decode(droppedWords) : '',
      embeddings: [...new Set(used.filter(({ start }) => start < chunkLength).map(({ name }) => name))],
    };
  }
  const { chunks, tokenCount, embeddings: used } = chunkFragments(
    parsePromptAttention(prompt),
    (text) => tokenizer.tokenize(text),
    chunkLayout(tokenizer),
    embeddings,
  );
  return { chunks, tokenCount, capacity: chunkCapacity(tokenCount, chunkLength), droppedTokenCount: 0, droppedText: '', embeddings: used };
}

/**
 * The prompt and the negative prompt as text-encoder rows with the same number of chunks, so their encodings have the
 * same sequence length for classifier-free guidance: the shorter one is padded with chunks of the empty prompt, as
 * A1111 pads the shorter conditioning with its encoding of "" (`pad_cond` with `cond_stage_model_empty_prompt`).
 */
export function encodePromptChunks(
  tokenizer: ClipTokenizer,
  prompt: string,
  negativePrompt: string,
  syntax: PromptSyntax,
  embeddings?: EmbeddingMatcher,
): { prompt: PromptTokens; negative: PromptTokens } {
  const positive = tokenizePrompt(tokenizer, prompt, syntax, embeddings);
  const negative = tokenizePrompt(tokenizer, negativePrompt, syntax, embeddings);
  const chunkCount = Math.max(positive.chunks.length, negative.chunks.length);
  const emptyChunk = tokenizePrompt(tokenizer, '', syntax).chunks[0]!;
  const padded = (tokens: PromptTokens): PromptTokens => ({
    ...tokens,
    chunks: [
      ...tokens.chunks,
      ...Array.from({ length: chunkCount - tokens.chunks.length }, () => ({ ids: emptyChunk.ids.slice(), weights: emptyChunk.weights.slice() })),
    ],
  });
  return { prompt: padded(positive), negative: padded(negative) };
}

/**
 * Runs the text encoder on `rows` rows of token ids (row-major, rows × tokens) and returns its last hidden state as
 * float32, [rows, tokens, dim]. The pipeline supplies it (its session, the input's dtype, the device).
 */
export type RunTextEncoder = (ids: Int32Array, rows: number) => Promise<{ hidden: Float32Array; dim: number }>;

/**
 * Encodes a prompt's chunks in one text-encoder call, applies A1111's emphasis chunk by chunk and returns the
 * chunks concatenated along the sequence axis: [1, chunks × tokens, dim], the UNet's `encoder_hidden_states` for one
 * prompt (A1111's `torch.hstack` of the chunk encodings). With all weights 1 (`plain`, or an a1111 prompt without
 * brackets) the result is the text encoder's output untouched, as diffusers computes it. The emphasis is applied in
 * place on the buffer `runTextEncoder` returns.
 */
export async function encodeWeightedChunks(
  runTextEncoder: RunTextEncoder,
  chunks: readonly PromptChunk[],
): Promise<{ embeddings: Float32Array; dims: [number, number, number] }> {
  const tokens = chunks[0]?.ids.length;
  if (tokens === undefined) throw new RangeError('a prompt has at least one chunk');
  const ids = new Int32Array(chunks.length * tokens);
  chunks.forEach((chunk, i) => ids.set(chunk.ids, i * tokens));
  const { hidden, dim } = await runTextEncoder(ids, chunks.length);
  applyOriginalEmphasisToChunks(
    hidden,
    chunks.map((chunk) => chunk.weights),
    dim,
  );
  return { embeddings: hidden, dims: [1, chunks.length * tokens, dim] };
}

/** "92/150 tokens" (A1111's counter), and under `plain` what the truncation dropped. */
export function formatTokenCount(tokens: Pick<PromptTokens, 'tokenCount' | 'capacity' | 'droppedTokenCount' | 'droppedText'>): string {
  const count = `${tokens.tokenCount}/${tokens.capacity} tokens`;
  if (tokens.droppedTokenCount === 0) return count;
  const noun = tokens.droppedTokenCount === 1 ? 'token was' : `${tokens.droppedTokenCount} tokens were`;
  return `${count}; the last ${noun} dropped: "${tokens.droppedText}"`;
}

/** The prompt's token count under a syntax, for the "92/150 tokens" display (no chunks kept). */
export function countTokens(
  tokenizer: ClipTokenizer,
  prompt: string,
  syntax: PromptSyntax,
  embeddings?: EmbeddingMatcher,
): Pick<PromptTokens, 'tokenCount' | 'capacity' | 'droppedTokenCount' | 'droppedText'> {
  const { tokenCount, capacity, droppedTokenCount, droppedText } = tokenizePrompt(tokenizer, prompt, syntax, embeddings);
  return { tokenCount, capacity, droppedTokenCount, droppedText };
}
