import { InvalidRequestError } from '../../errors.js';

/**
 * A1111's prompt attention syntax (stable-diffusion-webui, modules/prompt_parser.py `parse_prompt_attention`),
 * reproduced with its exact semantics so a prompt copied from A1111 weights the same words the same way:
 *
 * - `(x)` multiplies x's weight by 1.1, `[x]` by 1/1.1, `(x:1.5)` by 1.5; brackets nest and multiply.
 * - `\(` `\)` `\[` `\]` `\\` are the literal characters; a backslash before anything else vanishes.
 * - A closing bracket with no opener is literal text; an opener never closed applies its 1.1 (or 1/1.1) to
 *   everything after it, as if closed at the end.
 * - `BREAK` (a whole word, upper case) becomes the marker `{ text: 'BREAK', weight: -1 }` that starts a new chunk.
 *   It is a fragment like the others, so brackets around it multiply its weight too, and it then no longer reads as
 *   a marker (A1111 then encodes the word "break" at that negative weight), while merged neighbours that spell
 *   "BREAK" at weight -1, as `(BRE:-1)(AK:-1)` does, are one: we keep these quirks rather than guess.
 * - Neighbouring fragments with equal weights are merged.
 *
 * A1111 writes these with Python's `re` on `str`, whose `\s`, `\d` and `\b` are Unicode-aware; the classes below spell
 * out the same sets for JavaScript, whose own `\s`, `\d` and `\b` differ.
 */

/** One piece of prompt text and the weight its brackets give it (A1111's `[text, weight]` pair). */
export interface WeightedFragment {
  text: string;
  weight: number;
}

/** The weight A1111 gives its BREAK marker fragment. */
export const BREAK_WEIGHT = -1;
export const BREAK_TEXT = 'BREAK';

export function isBreakMarker(fragment: WeightedFragment): boolean {
  return fragment.text === BREAK_TEXT && fragment.weight === BREAK_WEIGHT;
}

const ROUND_BRACKET_MULTIPLIER = 1.1;
const SQUARE_BRACKET_MULTIPLIER = 1 / 1.1;

/** Python's `\s` on str: the characters `str.isspace()` accepts (JavaScript's `\s` lacks \x1c-\x1f and \x85, adds \ufeff). */
const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
/** Python's `\w` on str: letters, numbers (any Unicode N category) and underscore. */
const PY_WORD = '[\\p{L}\\p{N}_]';

/**
 * The tokens, in A1111's order of alternatives: escapes, openers, a weighted closer `:1.5)` (group 1 is the weight;
 * Python's `\d` is any Unicode decimal digit), plain closers, runs of ordinary text, and a lone colon.
 */
const ATTENTION_TOKEN = new RegExp(
  [
    '\\\\\\(',
    '\\\\\\)',
    '\\\\\\[',
    '\\\\\\]',
    '\\\\\\\\',
    '\\\\',
    '\\(',
    '\\[',
    `:${PY_SPACE}*([+-]?[.\\p{Nd}]+)${PY_SPACE}*\\)`,
    '\\)',
    '\\]',
    '[^\\\\()\\[\\]:]+',
    ':',
  ].join('|'),
  'gu',
);

/** A1111's `\s*\bBREAK\b\s*`: BREAK as a whole word, with the whitespace around it. */
const BREAK_SEPARATOR = new RegExp(`${PY_SPACE}*(?<!${PY_WORD})BREAK(?!${PY_WORD})${PY_SPACE}*`, 'u');

const DECIMAL_DIGIT = /\p{Nd}/u;
/** Python's float() syntax for what the weight group can hold: digits with at most one point, at least one digit. */
const PY_FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)$/;

/**
 * The value of a Unicode decimal digit. Unicode assigns them only in runs of ten, 0 to 9 in code point order, so the
 * value is the distance from the start of the run (runs that touch, like the mathematical digits, are whole tens).
 */
function decimalDigitValue(digit: string): number {
  const codePoint = digit.codePointAt(0)!;
  let runStart = codePoint;
  while (runStart > 0 && DECIMAL_DIGIT.test(String.fromCodePoint(runStart - 1))) runStart--;
  return (codePoint - runStart) % 10;
}

/** Python's `float(weight)` for the weight group: Unicode digits count, and a malformed number is an error. */
function parseWeight(weight: string, token: string): number {
  const ascii = weight.replace(/\p{Nd}/gu, (digit) => String(decimalDigitValue(digit)));
  if (!PY_FLOAT.test(ascii)) {
    // A1111 fails the whole generation here (float() raises ValueError); say which part of the prompt is wrong.
    throw new InvalidRequestError(`The prompt weight in "${token}" is not a number; write it like (word:1.2).`);
  }
  return Number(ascii);
}

/** Splits a prompt into weighted fragments exactly as A1111's `parse_prompt_attention` does. */
export function parsePromptAttention(prompt: string): WeightedFragment[] {
  const fragments: WeightedFragment[] = [];
  const roundBrackets: number[] = [];
  const squareBrackets: number[] = [];

  // A bracket multiplies every fragment that was added since it opened, however deeply nested.
  const multiplyFrom = (start: number, multiplier: number): void => {
    for (let i = start; i < fragments.length; i++) fragments[i]!.weight *= multiplier;
  };

  for (const match of prompt.matchAll(ATTENTION_TOKEN)) {
    const token = match[0];
    const weight = match[1];
    if (token.startsWith('\\')) {
      fragments.push({ text: token.slice(1), weight: 1 });
    } else if (token === '(') {
      roundBrackets.push(fragments.length);
    } else if (token === '[') {
      squareBrackets.push(fragments.length);
    } else if (weight !== undefined && roundBrackets.length > 0) {
      multiplyFrom(roundBrackets.pop()!, parseWeight(weight, token));
    } else if (token === ')' && roundBrackets.length > 0) {
      multiplyFrom(roundBrackets.pop()!, ROUND_BRACKET_MULTIPLIER);
    } else if (token === ']' && squareBrackets.length > 0) {
      multiplyFrom(squareBrackets.pop()!, SQUARE_BRACKET_MULTIPLIER);
    } else {
      token.split(BREAK_SEPARATOR).forEach((part, i) => {
        if (i > 0) fragments.push({ text: BREAK_TEXT, weight: BREAK_WEIGHT });
        fragments.push({ text: part, weight: 1 });
      });
    }
  }

  // Unclosed brackets apply to the end of the prompt, in the order they were opened, as A1111 applies them.
  for (const start of roundBrackets) multiplyFrom(start, ROUND_BRACKET_MULTIPLIER);
  for (const start of squareBrackets) multiplyFrom(start, SQUARE_BRACKET_MULTIPLIER);

  if (fragments.length === 0) fragments.push({ text: '', weight: 1 });

  // Merge runs of identical weights (exact float equality, as A1111 compares them).
  let i = 0;
  while (i + 1 < fragments.length) {
    const current = fragments[i]!;
    const next = fragments[i + 1]!;
    if (current.weight === next.weight) {
      current.text += next.text;
      fragments.splice(i + 1, 1);
    } else {
      i++;
    }
  }
  return fragments;
}
