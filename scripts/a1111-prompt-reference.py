#!/usr/bin/env python3
"""Expected values for the A1111 prompt-syntax tests, computed by AUTOMATIC1111's own code.

Why: src/diffusion/prompt/ re-implements stable-diffusion-webui's prompt attention parser
(modules/prompt_parser.py `parse_prompt_attention`) and its long-prompt chunking (modules/sd_hijack_clip.py
`tokenize_line`). The tests must not take their expected values from that re-implementation, so this script runs
A1111's functions themselves on a table of prompts and writes what they return to
test/fixtures/reference/a1111-prompts.json.

How: A1111 is not vendored here. Point --a1111 at a checkout of stable-diffusion-webui (a folder holding
modules/prompt_parser.py and modules/sd_hijack_clip.py); nothing of it is copied into this repository. Those two
modules import torch, lark and other webui modules at load time without using them in the two functions we call,
so this script puts inert stand-ins for those imports in sys.modules (no torch, no lark needed), with A1111's
default options: emphasis "Original", comma_padding_backtrack 20, no textual-inversion embeddings.

tokenize_line needs a CLIP tokenizer. Python here has no transformers, so `ClipBpe` below is the CLIP BPE written
out (the OpenAI CLIP tokenizer's byte-level BPE: whitespace collapsed, lower-cased, split with CLIP's pattern, merged
by rank) over the model's own tokenizer/vocab.json and merges.txt; it is independent of our TypeScript tokenizer.
The chunking table uses plain ASCII words, where ftfy/html clean-up (absent here) changes nothing.

    python3 scripts/a1111-prompt-reference.py --a1111 PATH/TO/stable-diffusion-webui \
        [--tokenizer test/fixtures/tiny-sd/tokenizer] [--out test/fixtures/reference/a1111-prompts.json]

Before writing, it checks that BPE against diffusers' tokenizer: the `input_ids` of every reference run in
test/fixtures/reference/cases/ (--cases). Needs the `regex` module (CLIP's split pattern uses \\p{L}); it is
deterministic.
"""
import argparse
import importlib
import json
import os
import sys
import types
import unicodedata

import regex


def install_import_stand_ins(a1111_root):
    """Stand-ins for what the two A1111 modules import but the two functions used here never call."""

    def stub(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    class Module:  # torch.nn.Module, the base class of A1111's text-conditioning models
        def __init__(self):
            pass

    torch = stub('torch')
    torch.nn = stub('torch.nn', Module=Module)
    stub('lark', Lark=lambda *args, **kwargs: None, Visitor=object, Transformer=object,
         exceptions=types.SimpleNamespace(LarkError=Exception))

    package = types.ModuleType('modules')
    package.__path__ = [os.path.join(a1111_root, 'modules')]
    sys.modules['modules'] = package

    class NoEmbeddings:  # textual inversion: no embedding files, as with a fresh install
        def find_embedding_at_position(self, tokens, offset):
            return None, None

    hijack = types.SimpleNamespace(embedding_db=NoEmbeddings(), fixes=None, comments=[], extra_generation_params={})
    for name, attrs in {
        'devices': {},
        'sd_emphasis': {},
        'sd_hijack': {'model_hijack': hijack},
        # A1111's defaults (modules/shared_options.py): emphasis "Original", comma_padding_backtrack 20.
        'shared': {'opts': types.SimpleNamespace(emphasis='Original', comma_padding_backtrack=20)},
    }.items():
        setattr(package, name, stub(f'modules.{name}', **attrs))
    prompt_parser = importlib.import_module('modules.prompt_parser')
    sd_hijack_clip = importlib.import_module('modules.sd_hijack_clip')
    return prompt_parser, sd_hijack_clip, hijack


def bytes_to_unicode():
    """CLIP's (and GPT-2's) reversible byte → printable character table."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ClipBpe:
    """The CLIP BPE tokenizer over a model's vocab.json + merges.txt, with the interface A1111 calls on it."""

    PATTERN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                            regex.IGNORECASE)

    def __init__(self, folder):
        with open(os.path.join(folder, 'vocab.json'), encoding='utf-8') as f:
            self.vocab = json.load(f)
        with open(os.path.join(folder, 'merges.txt'), encoding='utf-8') as f:
            lines = [line for line in f.read().split('\n') if line and not line.startswith('#version')]
        self.ranks = {tuple(line.split(' ')): rank for rank, line in enumerate(lines)}
        with open(os.path.join(folder, 'tokenizer_config.json'), encoding='utf-8') as f:
            config = json.load(f)

        def content(token):
            return token if isinstance(token, str) else token['content']

        self.bos_token_id = self.vocab[content(config['bos_token'])]
        self.eos_token_id = self.vocab[content(config['eos_token'])]
        self.byte_encoder = bytes_to_unicode()

    def get_vocab(self):
        return dict(self.vocab)

    def bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + '</w>',)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float('inf')))
            if best not in self.ranks:
                break
            merged = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text):
        text = regex.sub(r'\s+', ' ', unicodedata.normalize('NFC', text)).strip().lower()
        ids = []
        for piece in self.PATTERN.findall(text):
            token = ''.join(self.byte_encoder[b] for b in piece.encode('utf-8'))
            ids.extend(self.vocab[part] for part in self.bpe(token))
        return ids

    def __call__(self, texts, truncation=False, add_special_tokens=False):
        assert truncation is False and add_special_tokens is False
        return {'input_ids': [self.encode(text) for text in texts]}


def check_tokenizer_against_diffusers(tokenizer, cases_folder):
    """The BPE above must give the ids diffusers' own CLIPTokenizer gave for the reference runs' prompts."""
    checked = 0
    for name in sorted(os.listdir(cases_folder)):
        with open(os.path.join(cases_folder, name, 'case.json'), encoding='utf-8') as f:
            case = json.load(f)
        for text_key, ids_key in (('prompt', 'input_ids'), ('negative', 'negative_input_ids')):
            if text_key not in case or ids_key not in case:
                continue
            ids = case[ids_key][0] if isinstance(case[ids_key][0], list) else case[ids_key]
            expected = [i for i in ids[1:] if i != tokenizer.eos_token_id]
            if tokenizer.encode(case[text_key]) != expected:
                sys.exit(f'the CLIP BPE disagrees with diffusers on {name} {text_key}: {case[text_key]!r}')
            checked += 1
    print(f'CLIP BPE agrees with diffusers on {checked} reference prompts')


# Prompts for parse_prompt_attention: A1111's doctests, then the edge cases of its syntax.
PARSER_CASES = [
    'normal text',
    'an (important) word',
    '(unbalanced',
    '\\(literal\\]',
    '(unnecessary)(parens)',
    'a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).',
    '',
    '()',
    '(x)',
    '((x))',
    '(((x)))',
    '[x]',
    '[[x]]',
    '([x])',
    '(x:1.5)',
    '(x: 1.5 )',
    '(x:0)',
    '(x:-1)',
    '(x:+.5)',
    '(x:1.)',
    '(x:.5)',
    '((x:1.5))',
    '[(x:2)]',
    '(x:1.5',
    '(x:abc)',
    'x:1.5)',
    'a) b] c',
    '[a (b] c)',
    'a (b [c] d) e',
    '(a)(b:1.1)',
    'a ( b ) c',
    '\\\\',
    'a\\b',
    '\\(a\\) \\[b\\]',
    '(a \\) b)',
    'a \\(b:1.5\\)',
    '[x:y:0.5]',
    'cat AND dog',
    'a\n(b)',
    'a BREAK b',
    'aBREAK b',
    'a BREAKfast',
    'a break b',
    'a BREAK BREAK b',
    'BREAK',
    ' BREAK ',
    'BREAK a',
    '(a BREAK b)',
    'a\nBREAK\nb',
    'a\u3000BREAK b',
    'a\x1cBREAK b',
    '\u00e9BREAK b',
    'a_BREAK b',
    'a (b:\u0661.\u0665)',
    '(BRE:-1)(AK:-1)',
    '(x:1.2.3)',
    '(x:.)',
]


def words(word, count):
    return ' '.join([word] * count)


# Prompts for tokenize_line: chunk boundaries, the comma rule, BREAK, padding and the token count.
CHUNK_CASES = [
    ('short', 'a dog in a batman costume'),
    ('empty', ''),
    ('weighted', 'a (dog:1.5) in [batman] ((costume))'),
    ('exactly 75 tokens', words('dog', 75)),
    ('76 tokens', words('dog', 76)),
    ('80 tokens, no comma', words('dog', 80)),
    ('160 tokens, three chunks', words('dog', 160)),
    ('comma 5 tokens back', words('dog', 70) + ', ' + words('cat', 10)),
    ('comma 20 tokens back (the limit)', words('dog', 55) + ', ' + words('cat', 30)),
    ('comma 21 tokens back (too far)', words('dog', 54) + ', ' + words('cat', 30)),
    ('comma as the 76th token', words('dog', 75) + ', ' + words('cat', 3)),
    ('comma as the 75th token', words('dog', 74) + ', ' + words('cat', 3)),
    ('weights carried past the comma', words('dog', 60) + ', (' + words('cat', 20) + ':1.3)'),
    ('two commas, the last one counts', words('dog', 60) + ', cat, ' + words('cow', 20)),
    ('BREAK', 'a dog BREAK a cat'),
    ('BREAK first', 'BREAK a dog'),
    ('BREAK last', 'a dog BREAK'),
    ('BREAK inside brackets is a word', '(a dog BREAK a cat)'),
    ('BREAK in a long prompt', words('dog', 80) + ' BREAK cat'),
    ('merged fragments that spell BREAK at -1 are a BREAK', 'a (BRE:-1)(AK:-1) b'),
    ('a realistic long prompt',
     'masterpiece, best quality, (a lighthouse on a rocky cliff at dusk:1.2), dramatic sky, crashing waves, '
     'seagulls, warm light from the lantern room, [fog], ((detailed stone texture)), cinematic composition, '
     'wide angle, 35mm photograph, golden hour, soft rim light, high dynamic range, film grain, muted colours, '
     'by a famous landscape photographer, award winning, trending on a photography site, sharp focus, '
     'intricate details, volumetric light, ocean spray, rugged coastline'),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--a1111', required=True, help='stable-diffusion-webui checkout (holds modules/)')
    parser.add_argument('--tokenizer', default='test/fixtures/tiny-sd/tokenizer', help="a model's tokenizer/ folder")
    parser.add_argument('--out', default='test/fixtures/reference/a1111-prompts.json')
    parser.add_argument('--cases', default='test/fixtures/reference/cases', help="diffusers' reference runs (case.json)")
    args = parser.parse_args()

    prompt_parser, sd_hijack_clip, hijack = install_import_stand_ins(args.a1111)
    tokenizer = ClipBpe(args.tokenizer)
    check_tokenizer_against_diffusers(tokenizer, args.cases)
    clip = sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords(types.SimpleNamespace(tokenizer=tokenizer), hijack)

    parse_cases = []
    for prompt in PARSER_CASES:
        try:
            parse_cases.append({'prompt': prompt, 'fragments': prompt_parser.parse_prompt_attention(prompt)})
        except ValueError as error:  # float() of a malformed weight: A1111 fails the generation
            parse_cases.append({'prompt': prompt, 'error': f'ValueError: {error}'})

    chunk_cases = []
    for name, prompt in CHUNK_CASES:
        chunks, token_count = clip.tokenize_line(prompt)
        chunk_cases.append({
            'name': name,
            'prompt': prompt,
            'chunks': [{'ids': chunk.tokens, 'weights': chunk.multipliers} for chunk in chunks],
            'token_count': token_count,
            'target_token_count': clip.get_target_prompt_token_count(token_count),
        })

    result = {
        'about': 'Made by scripts/a1111-prompt-reference.py from A1111 modules/prompt_parser.py parse_prompt_attention '
                 'and modules/sd_hijack_clip.py tokenize_line; see test/fixtures/README.md.',
        'options': {'emphasis': 'Original', 'comma_padding_backtrack': 20, 'chunk_length': clip.chunk_length,
                    'id_start': clip.id_start, 'id_end': clip.id_end, 'comma_token': clip.comma_token},
        'parse_prompt_attention': parse_cases,
        'tokenize_line': chunk_cases,
    }
    # One case per line: the file stays readable and its diffs small.
    lines = ['{']
    for k, key in enumerate(result):
        comma = ',' if k + 1 < len(result) else ''
        value = result[key]
        if isinstance(value, list):
            lines.append(f' {json.dumps(key)}: [')
            lines.extend(f'  {json.dumps(case)}' + (',' if i + 1 < len(value) else '') for i, case in enumerate(value))
            lines.append(f' ]{comma}')
        else:
            lines.append(f' {json.dumps(key)}: {json.dumps(value)}{comma}')
    lines.append('}')
    with open(args.out, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    json.loads('\n'.join(lines))
    print(f'wrote {args.out}: {len(parse_cases)} parser cases, {len(chunk_cases)} chunking cases')


if __name__ == '__main__':
    main()
