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

/** Tokenizes one prompt under a syntax into text-encoder rows and its token count. */
export function tokenizePrompt(tokenizer: ClipTokenizer, prompt: string, syntax: PromptSyntax): PromptTokens {
  const chunkLength = tokenizer.maxLength - 2;
  if (syntax === 'plain') {
    const promptIds = tokenizer.tokenize(prompt);
    const dropped = promptIds.slice(chunkLength);
    return {
      chunks: [{ ids: tokenizer.encode(prompt), weights: new Float32Array(tokenizer.maxLength).fill(1) }],
      tokenCount: promptIds.length,
      capacity: chunkLength,
      droppedTokenCount: dropped.length,
      droppedText: dropped.length > 0 ? tokenizer.decode(dropped) : '',
    };
  }
  const { chunks, tokenCount } = chunkFragments(parsePromptAttention(prompt), (text) => tokenizer.tokenize(text), chunkLayout(tokenizer));
  return { chunks, tokenCount, capacity: chunkCapacity(tokenCount, chunkLength), droppedTokenCount: 0, droppedText: '' };
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
): { prompt: PromptTokens; negative: PromptTokens } {
  const positive = tokenizePrompt(tokenizer, prompt, syntax);
  const negative = tokenizePrompt(tokenizer, negativePrompt, syntax);
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
): Pick<PromptTokens, 'tokenCount' | 'capacity' | 'droppedTokenCount' | 'droppedText'> {
  const { tokenCount, capacity, droppedTokenCount, droppedText } = tokenizePrompt(tokenizer, prompt, syntax);
  return { tokenCount, capacity, droppedTokenCount, droppedText };
}
