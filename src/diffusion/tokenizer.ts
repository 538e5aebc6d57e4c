import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLIPTokenizer } from '@huggingface/transformers';
import { pathExists } from '../util/fs.js';
import { ModelFileError } from './errors.js';
import { readModelJson } from './model-json.js';

/** Token ids for one prompt, padded or truncated to the text encoder's context length, as diffusers does. */
export interface ClipTokenizer {
  /** The text encoder's context length (77 for SD 1.5), from tokenizer_config.json's model_max_length. */
  readonly maxLength: number;
  readonly padTokenId: number;
  /** Start- and end-of-text ids (`<|startoftext|>`, `<|endoftext|>`): A1111 wraps each 75-token chunk in them. */
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  /**
   * Tokenizes literally (no weighting syntax), adds BOS/EOS, truncates to maxLength keeping EOS last and pads
   * with the pad token: diffusers' `tokenizer(prompt, padding="max_length", truncation=True)`.
   */
  encode(text: string): Int32Array;
  /** How many prompt tokens (without BOS/EOS) were dropped by truncation; the CLI and bot warn about them. */
  truncatedTokenCount(text: string): number;
  /**
   * The ids of the text alone: no BOS/EOS, no truncation, no padding (transformers'
   * `tokenizer(text, truncation=False, add_special_tokens=False)`, which A1111 calls on each prompt fragment).
   */
  tokenize(text: string): number[];
  /** The id of one vocabulary entry, e.g. `,</w>` (A1111's comma token), or undefined when the vocabulary lacks it. */
  tokenId(token: string): number | undefined;
  /** Text for token ids, special tokens skipped: how the CLI and bot show which words a truncation dropped. */
  decode(ids: readonly number[]): string;
}

interface TokenizerConfigFile {
  model_max_length?: number;
  bos_token?: string | { content: string };
  eos_token?: string | { content: string };
  pad_token?: string | { content: string };
  unk_token?: string | { content: string };
  do_lower_case?: boolean;
  [key: string]: unknown;
}

function readJson<T>(folder: string, name: string, label: string): Promise<T> {
  return readModelJson<T>(join(folder, name), label);
}

function tokenContent(token: TokenizerConfigFile['bos_token']): string | undefined {
  return typeof token === 'string' ? token : token?.content;
}

/**
 * The CLIP tokenizer in the Hugging Face `tokenizers` JSON format. SD 1.5 folders ship only vocab.json and
 * merges.txt (the format of the Python "slow" CLIPTokenizer), while transformers.js needs tokenizer.json, so we
 * describe CLIP's fixed normalisation / pre-tokenisation / post-processing here and take the vocabulary, merges
 * and special tokens from the model's own files.
 */
function clipTokenizerJson(
  vocab: Record<string, number>,
  merges: string[],
  special: { bos: string; eos: string; unk: string },
): Record<string, unknown> {
  const bosId = vocab[special.bos];
  const eosId = vocab[special.eos];
  if (bosId === undefined || eosId === undefined) {
    throw new ModelFileError('tokenizer/vocab.json', `has no id for ${special.bos} or ${special.eos}`);
  }
  const addedToken = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [addedToken(bosId, special.bos), addedToken(eosId, special.eos)],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: {
            Regex: `${escapeRegex(special.bos)}|${escapeRegex(special.eos)}|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`,
          },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [special.eos, eosId],
      cls: [special.bos, bosId],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: special.unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map((line) => line.split(' ')),
    },
  };
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Loads the model's `tokenizer/` folder: tokenizer.json when present, else vocab.json + merges.txt. */
export async function loadClipTokenizer(tokenizerFolder: string): Promise<ClipTokenizer> {
  const config = await readJson<TokenizerConfigFile>(tokenizerFolder, 'tokenizer_config.json', 'tokenizer/tokenizer_config.json');
  let tokenizerJson: Record<string, unknown>;
  if (await pathExists(join(tokenizerFolder, 'tokenizer.json'))) {
    tokenizerJson = await readJson(tokenizerFolder, 'tokenizer.json', 'tokenizer/tokenizer.json');
  } else {
    const vocab = await readJson<Record<string, number>>(tokenizerFolder, 'vocab.json', 'tokenizer/vocab.json');
    let mergesText: string;
    try {
      mergesText = await readFile(join(tokenizerFolder, 'merges.txt'), 'utf8');
    } catch {
      throw new ModelFileError('tokenizer/merges.txt', 'file is missing (needed when there is no tokenizer.json)');
    }
    const merges = mergesText
      .split('\n')
      .map((line) => line.trimEnd())
      .filter((line) => line.length > 0 && !line.startsWith('#version'));
    tokenizerJson = clipTokenizerJson(vocab, merges, {
      bos: tokenContent(config.bos_token) ?? '<|startoftext|>',
      eos: tokenContent(config.eos_token) ?? '<|endoftext|>',
      unk: tokenContent(config.unk_token) ?? '<|endoftext|>',
    });
  }
  const maxLength = config.model_max_length;
  if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < 2 || maxLength > 4096) {
    throw new ModelFileError('tokenizer/tokenizer_config.json', 'model_max_length must be the text encoder context length (77 for SD 1.5)');
  }
  let tokenizer: CLIPTokenizer;
  try {
    tokenizer = new CLIPTokenizer(tokenizerJson, config);
  } catch (error) {
    throw new ModelFileError('tokenizer/', `cannot build the CLIP tokenizer (${(error as Error).message})`, { cause: error });
  }
  const padTokenId = tokenizer.pad_token_id;
  if (typeof padTokenId !== 'number') {
    throw new ModelFileError('tokenizer/tokenizer_config.json', 'pad_token is not in the vocabulary');
  }
  const bosTokenId = tokenizer.bos_token_id;
  const eosTokenId = tokenizer.eos_token_id;
  if (typeof bosTokenId !== 'number' || typeof eosTokenId !== 'number') {
    throw new ModelFileError('tokenizer/tokenizer_config.json', 'bos_token or eos_token is not in the vocabulary');
  }
  const rawIds = (text: string): number[] => tokenizer.encode(text, { add_special_tokens: true });
  return {
    maxLength,
    padTokenId,
    bosTokenId,
    eosTokenId,
    encode(text: string): Int32Array {
      const ids = rawIds(text);
      const out = new Int32Array(maxLength).fill(padTokenId);
      if (ids.length <= maxLength) {
        out.set(ids);
      } else {
        // Truncation as transformers does it for a single sequence: keep the first maxLength-1 tokens, end with EOS.
        out.set(ids.slice(0, maxLength - 1));
        out[maxLength - 1] = ids[ids.length - 1]!;
      }
      return out;
    },
    truncatedTokenCount(text: string): number {
      return Math.max(0, rawIds(text).length - maxLength);
    },
    tokenize(text: string): number[] {
      return tokenizer.encode(text, { add_special_tokens: false });
    },
    tokenId(token: string): number | undefined {
      const id: unknown = tokenizer.convert_tokens_to_ids(token);
      return typeof id === 'number' ? id : undefined;
    },
    decode(ids: readonly number[]): string {
      return tokenizer.decode([...ids], { skip_special_tokens: true });
    },
  };
}
