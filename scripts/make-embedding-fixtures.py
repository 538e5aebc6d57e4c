#!/usr/bin/python3
"""Tiny random textual-inversion embeddings for the tiny fixture model (hidden size 32), one per file layout people
download, written by the libraries that write them in the wild (torch.save for .pt/.bin) or byte by byte to the
safetensors format (an 8-byte little-endian header length, a JSON header, the raw tensors).

Run by hand from the repository root with Debian's python3-torch (1.13) and numpy:

    /usr/bin/python3 scripts/make-embedding-fixtures.py

It writes test/fixtures/embeddings/ (files the engine must load), test/fixtures/embeddings-broken/ (files it must
skip with a warning) and test/fixtures/reference/token-embedding-fp16.onnx (a float16 token-embedding table); see
test/fixtures/README.md. The values are seeded, so a rerun writes the same files.
"""
import json
import os
import struct
import zipfile

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

WIDTH = 32  # the tiny text encoder's hidden size
OUT = 'test/fixtures/embeddings'
BROKEN = 'test/fixtures/embeddings-broken'


def write_safetensors(path: str, tensors: dict, metadata: dict | None = None) -> None:
    header = {}
    data = b''
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        dtype = {np.float32: 'F32', np.float16: 'F16'}[array.dtype.type]
        header[name] = {'dtype': dtype, 'shape': list(array.shape), 'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header['__metadata__'] = metadata
    encoded = json.dumps(header).encode()
    encoded += b' ' * (-len(encoded) % 8)  # the format pads the header with spaces to 8-byte alignment
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(encoded)) + encoded + data)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(BROKEN, exist_ok=True)
    rng = np.random.default_rng(14)
    vectors = lambda n: rng.standard_normal((n, WIDTH)).astype(np.float32) * 0.5

    # A1111's safetensors layout (what Civitai serves): one tensor named emb_params, [vectors, width].
    write_safetensors(f'{OUT}/glowy.safetensors', {'emb_params': vectors(1)})
    write_safetensors(f'{OUT}/moody.safetensors', {'emb_params': vectors(3)}, {'note': 'three vectors'})

    # A1111's .pt layout (modules/textual_inversion Embedding.save): string_to_param {'*': vectors} plus metadata;
    # the vectors as an nn.Parameter (torch pickles it through torch._utils._rebuild_parameter).
    inky = torch.nn.Parameter(torch.from_numpy(vectors(2)))
    torch.save({'string_to_token': {'*': 265}, 'string_to_param': {'*': inky}, 'name': 'inky', 'step': 1500,
                'sd_checkpoint': 'a9263745', 'sd_checkpoint_name': 'tiny'}, f'{OUT}/inky.pt')
    # The same layout with float16 vectors, saved as a plain tensor.
    papery = torch.from_numpy(vectors(1)).half()
    torch.save({'string_to_token': {'*': 265}, 'string_to_param': {'*': papery}, 'name': 'papery', 'step': 10}, f'{OUT}/papery.pt')

    # A view into a larger tensor: torch.save writes the whole storage and the view's offset into it.
    # (Its own generator, so the files after it keep their values.)
    base = torch.from_numpy(np.random.default_rng(15).standard_normal((5, WIDTH)).astype(np.float32) * 0.5)
    torch.save({'string_to_param': {'*': base[2:4]}, 'name': 'sliced', 'step': 1}, f'{OUT}/sliced.pt')

    # The original textual-inversion code's layout (rinongal/textual_inversion, which A1111 also reads):
    # string_to_param as a torch.nn.ParameterDict, pickled as a module object with its state. Its own generator too.
    dicty = torch.nn.ParameterDict({'*': torch.nn.Parameter(torch.from_numpy(np.random.default_rng(16).standard_normal((2, WIDTH)).astype(np.float32) * 0.5))})
    torch.save({'string_to_token': {'*': 265}, 'string_to_param': dicty}, f'{OUT}/dicty.pt')

    # diffusers' layout (learned_embeds.bin of textual_inversion.py): {token: vector}, one 1-D vector.
    torch.save({'<crafty>': torch.from_numpy(vectors(1)[0])}, f'{OUT}/crafty.bin')
    # diffusers' safetensors layout with a multi-vector embedding: {token: [vectors, width]}.
    write_safetensors(f'{OUT}/learned.safetensors', {'<learned>': vectors(2)})

    # Files to skip with a warning: not a safetensors file, an embedding for another model (width 768), and a .pt
    # whose pickle calls os.system (it must be refused, never run).
    with open(f'{BROKEN}/garbage.safetensors', 'wb') as f:
        f.write(b'this is not a safetensors file')
    write_safetensors(f'{BROKEN}/wide.safetensors', {'emb_params': rng.standard_normal((1, 768)).astype(np.float32)})
    with zipfile.ZipFile(f'{BROKEN}/evil.pt', 'w') as archive:
        # (A fixed date, so a rerun writes the same bytes.)
        archive.writestr(zipfile.ZipInfo('evil/data.pkl', date_time=(1980, 1, 1, 0, 0, 0)), b'\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.')
    # And one good file beside them, so the test sees the folder still loads.
    write_safetensors(f'{BROKEN}/fine.safetensors', {'emb_params': vectors(1)})

    # A float16 token-embedding table (some exports keep the text encoder in fp16): the token-embedding Gather of a
    # CLIP text encoder alone, named as the exporter names it, over a 5 × 4 table, its output cast to float32.
    table = numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float16), 'embeddings.token_embedding.weight')
    graph = helper.make_graph(
        [helper.make_node('Gather', ['embeddings.token_embedding.weight', 'input_ids'], ['gathered'], name='/embeddings/token_embedding/Gather'),
         helper.make_node('Cast', ['gathered'], ['embeddings'], name='/embeddings/Cast', to=TensorProto.FLOAT)],
        'token_embedding_fp16',
        [helper.make_tensor_value_info('input_ids', TensorProto.INT32, ['batch', 'sequence'])],
        [helper.make_tensor_value_info('embeddings', TensorProto.FLOAT, ['batch', 'sequence', 4])],
        [table],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)], producer_name='scripts/make-embedding-fixtures.py')
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, 'test/fixtures/reference/token-embedding-fp16.onnx')


if __name__ == '__main__':
    main()
