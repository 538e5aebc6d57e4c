import type { EmbeddingMatcher } from '../textual-inversion.js';
import { isBreakMarker, type WeightedFragment } from './a1111-parser.js';

/**
 * A1111's long-prompt chunking (stable-diffusion-webui, modules/sd_hijack_clip.py `tokenize_line`): the weighted
 * fragments are tokenized one by one and laid into chunks of `chunkLength` tokens (75 for SD 1.5), each wrapped in
 * BOS … EOS and padded with EOS to the text encoder's context length (77). Each chunk is encoded on its own and the
 * encodings are concatenated along the sequence axis, so a prompt is not cut at 77 tokens.
 */

/** A1111's default `comma_padding_backtrack`: how far back a comma may be for the chunk to end after it instead. */
export const COMMA_PADDING_BACKTRACK = 20;

/** One text-encoder row: `chunkLength + 2` token ids and the weight of each (1 for BOS, EOS and padding). */
export interface PromptChunk {
  ids: Int32Array;
  weights: Float32Array;
}

export interface ChunkedPrompt {
  chunks: PromptChunk[];
  /**
   * A1111's token count: 75 for every chunk but the last (even one a BREAK or the comma rule cut short), plus the
   * tokens of the last chunk. The "92/150" display shows it over the chunks' capacity.
   */
  tokenCount: number;
  /** The textual-inversion embeddings the prompt uses, by name, in order of first use. */
  embeddings: string[];
}

export interface ChunkLayout {
  /** Prompt tokens per chunk: the text encoder's context length minus BOS and EOS (75 for SD 1.5). */
  chunkLength: number;
  bosTokenId: number;
  /** EOS ends each chunk and also pads it: A1111 pads SD 1.5 prompts with `id_end` (its `id_pad` is `id_end`). */
  eosTokenId: number;
  /** The id of `,</w>`; undefined disables the comma rule, as A1111 does when the vocabulary has no such token. */
  commaTokenId: number | undefined;
  /** 0 disables the comma rule. */
  commaPaddingBacktrack: number;
}

/** Text → token ids without BOS/EOS or truncation (ClipTokenizer.tokenize). */
export type Tokenize = (text: string) => number[];

/**
 * Lays weighted fragments into chunks exactly as A1111's `tokenize_line` does. Where `embeddings` finds a
 * textual-inversion embedding at a token, its vector ids take that many slots, all with the fragment's weight, and an
 * embedding that does not fit in what is left of the chunk starts the next one: A1111 never splits an embedding.
 */
export function chunkFragments(
  fragments: readonly WeightedFragment[],
  tokenize: Tokenize,
  layout: ChunkLayout,
  embeddings?: EmbeddingMatcher,
): ChunkedPrompt {
  const { chunkLength, bosTokenId, eosTokenId, commaTokenId, commaPaddingBacktrack } = layout;
  const chunks: PromptChunk[] = [];
  let ids: number[] = [];
  let weights: number[] = [];
  let tokenCount = 0;
  const used = new Set<string>();
  // Position in the current chunk of its last comma, or -1.
  let lastComma = -1;

  const closeChunk = (isLast: boolean): void => {
    tokenCount += isLast ? ids.length : chunkLength;
    const row = new Int32Array(chunkLength + 2).fill(eosTokenId);
    const rowWeights = new Float32Array(chunkLength + 2).fill(1);
    row[0] = bosTokenId;
    row.set(ids, 1);
    rowWeights.set(weights, 1);
    chunks.push({ ids: row, weights: rowWeights });
    ids = [];
    weights = [];
    lastComma = -1;
  };

  for (const fragment of fragments) {
    if (isBreakMarker(fragment)) {
      closeChunk(false);
      continue;
    }
    const tokens = tokenize(fragment.text);
    for (let position = 0; position < tokens.length; ) {
      const token = tokens[position]!;
      if (token === commaTokenId) {
        lastComma = ids.length;
      } else if (
        commaPaddingBacktrack !== 0 &&
        ids.length === chunkLength &&
        lastComma !== -1 &&
        ids.length - lastComma <= commaPaddingBacktrack
      ) {
        // The chunk is full and a comma is near its end: end the chunk after the comma and carry the words after
        // it into the next one, so a phrase is not split across two encodings.
        const breakAt = lastComma + 1;
        const carriedIds = ids.slice(breakAt);
        const carriedWeights = weights.slice(breakAt);
        ids = ids.slice(0, breakAt);
        weights = weights.slice(0, breakAt);
        closeChunk(false);
        ids = carriedIds;
        weights = carriedWeights;
      }
      if (ids.length === chunkLength) closeChunk(false);
      const found = embeddings?.findAt(tokens, position) ?? null;
      // An embedding longer than a whole chunk cannot be placed (A1111 would overflow the chunk): its name stays words.
      const embedding = found !== null && found.ids.length <= chunkLength ? found : null;
      if (embedding === null) {
        ids.push(token);
        weights.push(fragment.weight);
        position++;
        continue;
      }
      if (ids.length + embedding.ids.length > chunkLength) closeChunk(false);
      used.add(embedding.name);
      ids.push(...embedding.ids);
      weights.push(...embedding.ids.map(() => fragment.weight));
      position += embedding.tokenLength;
    }
  }
  if (ids.length > 0 || chunks.length === 0) closeChunk(true);
  return { chunks, tokenCount, embeddings: [...used] };
}

/**
 * How many tokens the chunks a prompt of `tokenCount` tokens needs can hold: A1111's
 * `get_target_prompt_token_count`, the "150" of "92/150".
 */
export function chunkCapacity(tokenCount: number, chunkLength: number): number {
  return Math.ceil(Math.max(tokenCount, 1) / chunkLength) * chunkLength;
}
