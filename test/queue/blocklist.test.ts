// The blocklist matcher: words and regexes, case-insensitive, refusal of unsafe or unsupported patterns at set
// time, and linear time on inputs that make V8's backtracking engine take minutes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Blocklist, BlocklistSyntaxError } from '../../src/queue/blocklist.js';

const matchOf = (entry: string, prompt: string): string | undefined => Blocklist.compile([entry]).match(prompt)?.text;

test('words and phrases match whole words, case-insensitively, across Unicode width forms', () => {
  assert.equal(matchOf('gore', 'a scene full of GORE'), 'gore');
  assert.equal(matchOf('gore', 'gorey details'), undefined, 'not inside a longer word');
  assert.equal(matchOf('gore', 'Al Gore-style speech'), 'gore', 'punctuation is a word edge');
  assert.equal(matchOf('blood bath', 'a blood   bath'), 'blood   bath', 'any whitespace run between words');
  assert.equal(matchOf('nsfw', 'ＮＳＦＷ art'), 'nsfw', 'full-width letters are normalised first');
  assert.equal(matchOf('c++', 'code in c++ please'), 'c++', 'entries may contain symbols');
});

test('regex entries: classes, alternation, bounded repeats, anchors, word boundaries', () => {
  assert.equal(matchOf('/\\bcats?\\b/', 'two CATS sleeping'), 'cats');
  assert.equal(matchOf('/\\bcats?\\b/', 'concatenate'), undefined);
  assert.equal(matchOf('/(kill|hurt)(ing|s)?/', 'Hurting nobody'), 'hurting');
  assert.equal(matchOf('/x{2,3}y/', 'axxxxy'), 'xxxy');
  assert.equal(matchOf('/^draw/', 'please draw'), undefined);
  assert.equal(matchOf('/^draw/', 'Draw a cat'), 'draw');
  assert.equal(matchOf('/[^a-z ]/', 'only letters here'), undefined);
  assert.equal(matchOf('/[^a-z ]/', 'Only letters HERE'), undefined, 'negated classes fold case before negating');
  assert.equal(matchOf('/\\d{4}/', 'year 1999'), '1999');
  assert.equal(matchOf('/n[uo]de/i', 'A NODE graph'), 'node');
});

test('unsafe or unsupported patterns are refused when set, with a one-sentence reason', () => {
  const refusals: Array<[string, RegExp]> = [
    ['/(a+)+$/', /Nested repetition/],
    ['/(\\w+\\s?)*x/', /Nested repetition/],
    ['/(x)\\1/', /Backreferences/],
    ['/(?<n>x)\\k<n>/', /Named groups|Backreferences/],
    ['/(?=a)b/', /Lookarounds/],
    ['/(?<!a)b/', /Lookarounds/],
    ['/a{500}/', /above 100/],
    ['/(ab/', /does not compile/],
    ['/[z-a]/', /does not compile/],
    ['/x/g', /Only the "i" flag/],
    [`/${'a'.repeat(120)}/`, /at most 100 characters/],
    ['   ', /cannot be empty/],
  ];
  for (const [entry, reason] of refusals) {
    assert.throws(() => Blocklist.compile([entry]), (error: unknown) => {
      assert.ok(error instanceof BlocklistSyntaxError, `${entry}: ${String(error)}`);
      assert.match(error.message, reason, entry);
      assert.ok(error.message.includes(entry.trim()) || entry.trim() === '', 'the message names the entry');
      return true;
    });
  }
});

test('matching costs time linear in the prompt even where backtracking would explode', () => {
  // `a*a*b` over 6,000 "a"s takes V8's RegExp more than a minute (measured while writing this); here it is
  // one pass. The assertion is on the result; the pattern would time the test out if matching backtracked.
  const prompt = `${'a'.repeat(6000)}!`;
  assert.equal(matchOf('/a*a*b/', prompt), undefined);
  assert.equal(matchOf('/(a|aa)*c/', prompt), undefined);
  assert.equal(matchOf('/a*a*!/', prompt)?.length, 6001);
});

test('on ASCII prompts it finds the same text as JavaScript RegExp (leftmost, greedy)', () => {
  const patterns = [
    'cat', 'c.t', 'ca*t', 'ca+t?', '(ab|a)(bc|c)?', 'a(b|c){1,3}d', '\\bdo\\w*', '[aeiou]{2}', '[^ ]+ing\\b',
    'x?y*z+', '(?:na){2,}', '\\d+\\.\\d*', '^\\w+', '\\w+$', 'gr(a|e)y', '\\s+-\\s+', 'e\\b', '\\Bi\\B',
  ];
  const prompts = [
    'the cat sat on the mat', 'A CAAAT and a ct', 'abcbcd ABBBD acd', 'dogs doing dishes', 'queue of ideas',
    'xyyzz yz xz', 'nananana batman', 'pi is 3.14159 or 3.', 'grey grAy grIy', 'one - two -three', 'line\nbreak',
  ];
  for (const source of patterns) {
    const list = Blocklist.compile([`/${source}/`]);
    const reference = new RegExp(source, 'iu');
    for (const prompt of prompts) {
      const expected = reference.exec(prompt.toLowerCase())?.[0];
      assert.equal(list.match(prompt)?.text, expected, `/${source}/ on ${JSON.stringify(prompt)}`);
    }
  }
});
