#!/usr/bin/python3
"""Expected text-encoder outputs for clip skip 1 and 2 on the tiny fixture, computed without ONNX Runtime.

Why: the engine gets clip skip from a load-time rewrite of the exported text encoder (src/diffusion/clip-skip.ts) run
by ONNX Runtime. Checking that rewrite by running another truncated graph through ORT would repeat its assumptions, so
this script computes the CLIP text transformer itself, in numpy, from the weights stored in the ONNX file:
token + position embeddings, then per layer x += out_proj(attention(layer_norm1(x))) with a causal mask and
x += fc2(quick_gelu(fc1(layer_norm2(x)))), as transformers' CLIPTextTransformer does; `hidden_states` is the list
[embeddings, after layer 0, …], and clip skip k is final_layer_norm(hidden_states[-k]) — A1111's
`encode_with_transformers` for `CLIP_stop_at_last_layers = k` (k = 1 is the model's last_hidden_state).

Only the weights and three structural facts (head size in the attention Reshape, the layer norms' epsilon, the
quick-GELU constant) are read from the graph; which initializer is which weight is found by the module paths in the
node names (`/encoder/layers.0/self_attn/q_proj/MatMul` takes the q_proj weight, already transposed to [in, out]).

Run by hand (Debian's python3-onnx, numpy comes with it), from the repository root:

    apt-get install -y python3-onnx
    /usr/bin/python3 scripts/clip-skip-reference.py > test/fixtures/reference/clip-skip.json

It prints JSON: for each case its 77 input ids and, for clip skip 1 and 2, the [77, 32] output as a flat list.
"""
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper

MODEL = 'test/fixtures/tiny-sd/text_encoder/model.onnx'
# Token ids of diffusers' tokenizer for these prompts (BOS … EOS, padded with EOS to 77); the test re-derives them
# with our tokenizer and checks they match, so the prompts are what the cases mean.
PROMPTS = ['dog in batman costume', 'a red house by a river under a blue sky']


def clip_text_model(path: str = MODEL):
    """The numpy CLIP text transformer of an exported text encoder: (hidden_states(ids or embeddings), final layer
    norm, token-embedding table, layer count, width). `hidden_states` takes token ids, or token embeddings
    [tokens, width] to stand for them (textual inversion: scripts/textual-inversion-reference.py)."""
    model = onnx.load(path)
    graph = model.graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    by_name = {node.name: node for node in graph.node}

    def value(name: str) -> np.ndarray:
        """An initializer, through the exporter's Identity aliases of deduplicated weights, or a Constant."""
        if name in initializers:
            return initializers[name]
        node = producers[name]
        if node.op_type == 'Identity':
            return value(node.input[0])
        if node.op_type == 'Constant':
            return numpy_helper.to_array(node.attribute[0].t)
        raise KeyError(name)

    def weight_of(node_name: str) -> np.ndarray:
        """The one input of a MatMul/Mul/Add node that is a stored weight."""
        node = by_name[node_name]
        found = []
        for name in node.input:
            try:
                found.append(value(name))
            except KeyError:
                pass
        assert len(found) == 1, node_name
        return found[0].astype(np.float64)

    layers = 1 + max(int(n.name.split('/encoder/layers.')[1].split('/')[0]) for n in graph.node if '/encoder/layers.' in n.name)
    head_dim = int(value(by_name['/encoder/layers.0/self_attn/Concat'].input[3])[0])
    eps = float(value(by_name['/final_layer_norm/Add'].input[1]))
    gelu_constant = float(value(by_name['/encoder/layers.0/mlp/activation_fn/Mul'].input[1]))
    token_embedding = initializers['embeddings.token_embedding.weight'].astype(np.float64)
    position_embedding = initializers['embeddings.position_embedding.weight'].astype(np.float64)
    width = token_embedding.shape[1]
    heads = width // head_dim

    def layer_norm(x: np.ndarray, path: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * weight_of(f'{path}/Mul') + weight_of(f'{path}/Add_1')

    def linear(x: np.ndarray, path: str) -> np.ndarray:
        return x @ weight_of(f'{path}/MatMul') + weight_of(f'{path}/Add')

    def attention(x: np.ndarray, path: str) -> np.ndarray:
        tokens = x.shape[0]
        split = lambda t: t.reshape(tokens, heads, head_dim).transpose(1, 0, 2)
        q, k, v = (split(linear(x, f'{path}/{name}')) for name in ('q_proj', 'k_proj', 'v_proj'))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
        scores = scores + np.triu(np.full((tokens, tokens), -np.inf), 1)  # causal: token i sees tokens ≤ i
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        return linear((probs @ v).transpose(1, 0, 2).reshape(tokens, width), f'{path}/out_proj')

    def hidden_states(ids) -> list:
        tokens = np.asarray(ids)
        x = (token_embedding[tokens] if tokens.ndim == 1 else tokens.astype(np.float64)) + position_embedding[: len(tokens)]
        states = [x]
        for i in range(layers):
            path = f'/encoder/layers.{i}'
            x = x + attention(layer_norm(x, f'{path}/layer_norm1'), f'{path}/self_attn')
            h = linear(layer_norm(x, f'{path}/layer_norm2'), f'{path}/mlp/fc1')
            h = h * (1 / (1 + np.exp(-gelu_constant * h)))
            x = x + linear(h, f'{path}/mlp/fc2')
            states.append(x)
        return states

    return hidden_states, lambda x: layer_norm(x, '/final_layer_norm'), token_embedding, layers, width


def main() -> None:
    hidden_states, final_layer_norm, _, layers, width = clip_text_model()
    vocab = json.load(open('test/fixtures/tiny-sd/tokenizer/vocab.json'))
    bos, eos = vocab['<|startoftext|>'], vocab['<|endoftext|>']
    cases = []
    for prompt in PROMPTS:
        # Every word of these prompts is one token of the vocabulary (the test checks the ids against our tokenizer).
        ids = [bos] + [vocab[f'{word}</w>'] for word in prompt.split()] + [eos]
        ids += [eos] * (77 - len(ids))
        states = hidden_states(ids)
        outputs = {str(k): final_layer_norm(states[-k]).astype(np.float32).ravel().tolist() for k in (1, 2)}
        cases.append({'prompt': prompt, 'input_ids': ids, 'clip_skip': outputs})
    json.dump({'generator': 'scripts/clip-skip-reference.py (numpy, float64, from ' + MODEL + ')', 'layers': layers, 'dims': [77, width], 'cases': cases}, sys.stdout)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
