import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REFERENCE } from './reference.js';

/**
 * test/fixtures/reference/a1111-prompts.json: what A1111's own parse_prompt_attention and tokenize_line return for a
 * table of prompts (made by scripts/a1111-prompt-reference.py; see test/fixtures/README.md).
 */
export interface A1111PromptTable {
  options: { emphasis: string; comma_padding_backtrack: number; chunk_length: number; id_start: number; id_end: number; comma_token: number };
  parse_prompt_attention: ({ prompt: string; fragments: [string, number][] } | { prompt: string; error: string })[];
  tokenize_line: {
    name: string;
    prompt: string;
    chunks: { ids: number[]; weights: number[] }[];
    token_count: number;
    target_token_count: number;
  }[];
}

export function loadA1111PromptTable(): A1111PromptTable {
  return JSON.parse(readFileSync(join(REFERENCE, 'a1111-prompts.json'), 'utf8')) as A1111PromptTable;
}
