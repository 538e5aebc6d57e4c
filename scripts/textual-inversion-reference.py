#!/usr/bin/python3
"""Expected text-encoder outputs with textual-inversion embeddings in the prompt, computed without ONNX Runtime and
without the engine's embedding code.

Why: the engine appends each embedding's vectors to the exported text encoder's token-embedding table at load and
writes the new token ids where a prompt names the embedding (src/diffusion/textual-inversion.ts). A1111 instead
overwrites the token embeddings at those positions (sd_hijack.EmbeddingsWithFixes). This script computes A1111's
way: the numpy CLIP text transformer of scripts/clip-skip-reference.py, fed with the token embeddings of the words
and, at an embedding's positions, the embedding's vectors as read by torch.load (.pt/.bin) or by numpy from the
safetensors bytes. Clip skip 2 is applied as A1111 does (final layer norm of hidden_states[-2]).

Run by hand from the repository root (Debian's python3-onnx and python3-torch):

    /usr/bin/python3 scripts/make-embedding-fixtures.py
    /usr/bin/python3 scripts/textual-inversion-reference.py > test/fixtures/reference/textual-inversion.json

It prints JSON: `embeddings` (for each fixture file: its vectors and the sha256 of the file, computed here with
hashlib) and `cases` (a prompt given as words and embedding names, its token sequence, clip skip, and the
[77, 32] output as a flat list).
"""
import hashlib
import importlib.util
import json
import os
import struct
import sys

import numpy as np
import torch

FOLDER = 'test/fixtures/embeddings'
spec = importlib.util.spec_from_file_location('clip_skip_reference', 'scripts/clip-skip-reference.py')
clip_skip_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(clip_skip_reference)


def read_vectors(path: str) -> np.ndarray:
    if path.endswith('.safetensors'):
        raw = open(path, 'rb').read()
        (length,) = struct.unpack('<Q', raw[:8])
        header = json.loads(raw[8:8 + length])
        (name,) = [k for k in header if k != '__metadata__']
        entry = header[name]
        begin, end = entry['data_offsets']
        dtype = {'F32': np.float32, 'F16': np.float16}[entry['dtype']]
        array = np.frombuffer(raw[8 + length + begin:8 + length + end], dtype=dtype).reshape(entry['shape'])
    else:
        data = torch.load(path, map_location='cpu')
        tensor = next(iter(data['string_to_param'].values())) if 'string_to_param' in data else next(iter(data.values()))
        array = tensor.detach().float().numpy()
    array = array.astype(np.float32)
    return array[None, :] if array.ndim == 1 else array


# Prompts as words (each one token of the vocabulary) and embedding names; `items` where the words are not split by spaces.
CASES = [
    {'prompt': 'a moody dog', 'syntax': 'plain', 'clip_skip': 1},
    {'prompt': 'a moody dog', 'syntax': 'plain', 'clip_skip': 2},
    {'prompt': 'inky cat in a papery house', 'syntax': 'plain', 'clip_skip': 1},
    {'prompt': 'crafty learned dog', 'syntax': 'plain', 'clip_skip': 1},
    {'prompt': 'a glowy, moody dog', 'syntax': 'a1111', 'clip_skip': 2, 'items': [('a', 1.0), ('glowy', 1.0), (',', 1.0), ('moody', 1.0), ('dog', 1.0)]},
    # A1111's emphasis is not checked here: the tiny model's final layer norm has zero bias, so each token's hidden state
    # has mean ~0 and the whole chunk's mean is ~1e-9, which makes "restore the original mean" pure rounding noise.
    # The weights an embedding's slots get are checked in the test (chunk weights); emphasis itself in prompt-emphasis.
]


def main() -> None:
    hidden_states, final_layer_norm, token_embedding, _, width = clip_skip_reference.clip_text_model()
    vocab = json.load(open('test/fixtures/tiny-sd/tokenizer/vocab.json'))
    bos, eos = vocab['<|startoftext|>'], vocab['<|endoftext|>']
    files = sorted(f for f in os.listdir(FOLDER) if os.path.splitext(f)[1] in ('.safetensors', '.pt', '.bin'))
    embeddings = {}
    for file in files:
        path = os.path.join(FOLDER, file)
        embeddings[os.path.splitext(file)[0]] = {
            'file': file,
            'vectors': read_vectors(path),
            'sha256': hashlib.sha256(open(path, 'rb').read()).hexdigest(),
        }

    cases = []
    for case in CASES:
        items = case.get('items') or [(word, 1.0) for word in case['prompt'].split()]  # (weights are all 1, see above)
        rows = [token_embedding[bos]]
        sequence = ['<bos>']
        for word, weight in items:
            if word in embeddings:
                vectors = embeddings[word]['vectors'].astype(np.float64)
                rows.extend(vectors)
                sequence.extend(f'{word}[{i}]' for i in range(len(vectors)))
            else:
                rows.append(token_embedding[vocab[f'{word}</w>']])
                sequence.append(word)
        rows.append(token_embedding[eos])
        sequence.append('<eos>')
        while len(rows) < 77:
            rows.append(token_embedding[eos])
        states = hidden_states(np.stack(rows))
        k = case['clip_skip']
        z = final_layer_norm(states[-k]).astype(np.float32)
        cases.append({**{key: value for key, value in case.items() if key != 'items'}, 'sequence': sequence, 'output': z.astype(np.float32).ravel().tolist()})

    json.dump({
        'generator': 'scripts/textual-inversion-reference.py (numpy float64 CLIP from the ONNX weights; torch.load / numpy for the files)',
        'dims': [77, width],
        'embeddings': {name: {'file': e['file'], 'shape': list(e['vectors'].shape), 'vectors': e['vectors'].ravel().tolist(), 'sha256': e['sha256']} for name, e in embeddings.items()},
        'cases': cases,
    }, sys.stdout)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
