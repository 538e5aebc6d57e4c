/**
 * `<lora:…>` tags (lora/tags.ts). Expected values worked by hand from A1111's code: modules/extra_networks.py
 * (`re_extra_net = <(\w+):([^>]+)>`, every match removed from the prompt, args split at ':', `key=value` items named)
 * and extensions-builtin/Lora/extra_networks_lora.py (te = positional[1] or 1.0, te= overrides; unet = positional[2]
 * or te, unet= overrides).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidRequestError } from '../../src/errors.js';
import { extractExtraNetworks } from '../../src/diffusion/lora/tags.js';

const cases: Array<[string, string, Array<[string, number, number]>]> = [
  ['a cat <lora:x:0.8>', 'a cat ', [['x', 0.8, 0.8]]],
  ['<lora:x> a cat', ' a cat', [['x', 1, 1]]],
  ['a <lora:x:0.5:1.2>cat', 'a cat', [['x', 0.5, 1.2]]],
  ['<lora:x:unet=0.3>', '', [['x', 1, 0.3]]],
  ['<lora:x:0.6:te=0.2>', '', [['x', 0.2, 0.2]]], // unet defaults to te after te= applied
  ['<lora:x: 1.5 >', '', [['x', 1.5, 1.5]]],
  ['<lyco:y:-1>', '', [['y', -1, -1]]],
  ['(<lora:x:1>:1.2) dog', '(:1.2) dog', [['x', 1, 1]]],
  ['<lora:a:1><lora:b:0.5>', '', [['a', 1, 1], ['b', 0.5, 0.5]]],
  ['no tags <lora> <lora:> <:x>', 'no tags <lora> <lora:> <:x>', []],
  ['<hypernet:h:1> <lora:x:1>', ' ', [['x', 1, 1]]],
];

test('extra-network tags are removed from the text and read as A1111 reads them', () => {
  for (const [prompt, text, loras] of cases) {
    const parsed = extractExtraNetworks(prompt);
    assert.equal(parsed.text, text, prompt);
    assert.deepEqual(
      parsed.loras.map((lora) => [lora.name, lora.teMultiplier, lora.unetMultiplier]),
      loras,
      prompt,
    );
  }
  assert.deepEqual(extractExtraNetworks('<hypernet:h:1> <lora:x:1>').ignored, ['<hypernet:h:1>']);
});

test('a multiplier that is not a number is a user error', () => {
  assert.throws(() => extractExtraNetworks('<lora:x:strong>'), InvalidRequestError);
  assert.throws(() => extractExtraNetworks('<lora:x:1:unet=>'), InvalidRequestError);
});
