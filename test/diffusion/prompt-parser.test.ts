import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidRequestError } from '../../src/errors.js';
import { isBreakMarker, parsePromptAttention } from '../../src/diffusion/prompt/a1111-parser.js';
import { loadA1111PromptTable } from '../helpers/a1111-prompts.js';

const table = loadA1111PromptTable();

describe("A1111's parse_prompt_attention, run on the table of prompts", () => {
  for (const expected of table.parse_prompt_attention) {
    test(JSON.stringify(expected.prompt), () => {
      if ('error' in expected) {
        // A1111's float() raises; we refuse the prompt with a user-facing error naming the bad weight.
        assert.throws(() => parsePromptAttention(expected.prompt), (error: unknown) => {
          assert.ok(error instanceof InvalidRequestError);
          assert.match(error.message, /prompt weight .* is not a number/);
          return true;
        });
        return;
      }
      const fragments = parsePromptAttention(expected.prompt).map(({ text, weight }) => [text, weight]);
      // Exact float equality: the weights are products of the same doubles in the same order as A1111's.
      assert.deepEqual(fragments, expected.fragments);
    });
  }
});

test("the table holds A1111's own docstring examples, with their documented results", () => {
  // modules/prompt_parser.py's doctests, read from the source: a check that the table was made by that code.
  const documented: Record<string, [string, number][]> = {
    'normal text': [['normal text', 1.0]],
    'an (important) word': [['an ', 1.0], ['important', 1.1], [' word', 1.0]],
    '(unbalanced': [['unbalanced', 1.1]],
    '\\(literal\\]': [['(literal]', 1.0]],
    '(unnecessary)(parens)': [['unnecessaryparens', 1.1]],
    'a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).': [
      ['a ', 1.0], ['house', 1.5730000000000004], [' ', 1.1], ['on', 1.0], [' a ', 1.1], ['hill', 0.55],
      [', sun, ', 1.1], ['sky', 1.4641000000000006], ['.', 1.1],
    ],
  };
  for (const [prompt, fragments] of Object.entries(documented)) {
    const row = table.parse_prompt_attention.find((c) => c.prompt === prompt);
    assert.ok(row && 'fragments' in row, prompt);
    assert.deepEqual(row.fragments, fragments, prompt);
    assert.deepEqual(parsePromptAttention(prompt).map(({ text, weight }) => [text, weight]), fragments, prompt);
  }
});

test('BREAK is a marker only at weight -1: inside brackets it is the word "BREAK" at a negative weight', () => {
  assert.deepEqual(parsePromptAttention('a BREAK b').map(isBreakMarker), [false, true, false]);
  assert.deepEqual(parsePromptAttention('(a BREAK b)').map(isBreakMarker), [false, false, false]);
});
