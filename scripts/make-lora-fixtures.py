#!/usr/bin/python3
"""Tiny random LoRAs for the tiny model, and what merging them must give, computed without our TypeScript code.

Writes into test/fixtures/loras/:
- `tiny-kohya.safetensors`: kohya / A1111 layout (`lora_unet_…` / `lora_te_text_model_…` with `.lora_down.weight`,
  `.lora_up.weight`, `.alpha`), float16 as kohya saves, rank 4, alpha 2 (scale alpha/rank = 0.5). It touches UNet
  attention projections (self- and cross-attention, to_out.0, a GEGLU ff.net.0.proj), the 1×1 convs proj_in /
  proj_out, one 3×3 conv (LoCon style: down 3×3, up 1×1), a Gemm with transB (a resnet's time_emb_proj, stored
  [out, in]), text-encoder q/k/v and an mlp fc1, and carries ONE key that
  names no module of the model (the merge must count and report it).
- `tiny-peft.safetensors`: diffusers layouts, float32, rank 2, no alpha (scale 1): PEFT
  (`unet.….lora_A.weight` / `.lora_B.weight`, `text_encoder.text_model.….lora_A.weight`), including a 1×1 conv, and
  the older attention-processor layout (`unet.….attn2.processor.to_k_lora.down.weight`, `to_out_lora` = `to_out.0`).
- `expected.json` + `expected.f32`: for each case (a LoRA set with weights), the merged initializers (by name, in the
  ONNX layout: MatMul weights [in, out], Conv [out, in, kh, kw]) and the text encoder's and UNet's outputs for fixed
  inputs (also in `expected.f32`), computed here; and `hashes`: A1111's short hash of each file (sha256 of the bytes
  after the safetensors header, first 12 hex digits), computed here with hashlib.

How the expected values are made (independent of src/diffusion/lora/):
- The merge is numpy in torch's layout: W = initializer (transposed back to [out, in] for MatMul),
  W += weight · scale · (up.reshape(out, r) @ down.reshape(r, −1)).reshape(W.shape), scale = alpha / r (1 without
  alpha), then stored back in the ONNX layout. Which initializer a LoRA key names is found from the node names
  (`/down_blocks.0/…/attn1/to_q/MatMul` takes `onnx::MatMul_…`), written out here per key format.
- The outputs: the merged initializers written by python-onnx into a full copy of each model (weights inline) in a
  temporary folder, then run by ONNX Runtime (onnxruntime-node, as the only ONNX evaluator here: Debian's onnx 1.12
  has no reference evaluator) on fixed inputs. So the test's merged sessions (our protobuf rewrite) and these (python-
  onnx's copies) share only ORT and the fixture's base weights.

Run by hand from the repository root (Debian's python3-onnx and numpy; node with node_modules installed):

    /usr/bin/python3 scripts/make-lora-fixtures.py
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

MODEL = 'test/fixtures/tiny-sd'
OUT = 'test/fixtures/loras'


def write_safetensors(path, tensors, metadata):
    """safetensors by hand: u64 header length, JSON header (dtype, shape, data_offsets), then the raw data."""
    header = {'__metadata__': metadata}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        dtype = {np.dtype('float32'): 'F32', np.dtype('float16'): 'F16'}[array.dtype]
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder('<')).tobytes()
        header[name] = {'dtype': dtype, 'shape': list(array.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as file:
        file.write(struct.pack('<Q', len(text)))
        file.write(text)
        for blob in blobs:
            file.write(blob)


def weight_index(model):
    """module path (dots, as in the node names) -> (initializer name, op type) for MatMul / Conv / Gemm weights."""
    inits = {i.name for i in model.graph.initializer}
    index = {}
    for node in model.graph.node:
        if node.op_type not in ('MatMul', 'Conv', 'Gemm') or len(node.input) < 2 or node.input[1] not in inits:
            continue
        parts = node.name.strip('/').split('/')
        index['.'.join(parts[:-1])] = (node.input[1], node.op_type)
    return index


def load(part):
    return onnx.load(os.path.join(MODEL, part, 'model.onnx'))


rng = np.random.default_rng(20261206)


def lora_pair(torch_shape, rank, scale_down=0.3, scale_up=0.3):
    """down, up as a LoRA file stores them for a weight of torch shape [out, in] or [out, in, kh, kw]."""
    out_dim, in_dim = torch_shape[0], torch_shape[1]
    if len(torch_shape) == 4:
        down = rng.standard_normal((rank, in_dim, torch_shape[2], torch_shape[3])) * scale_down
        up = rng.standard_normal((out_dim, rank, 1, 1)) * scale_up
    else:
        down = rng.standard_normal((rank, in_dim)) * scale_down
        up = rng.standard_normal((out_dim, rank)) * scale_up
    return down, up


def torch_shape_of(model, init_name, op):
    init = next(i for i in model.graph.initializer if i.name == init_name)
    dims = list(init.dims)
    return [dims[1], dims[0]] if op == 'MatMul' else dims


KOHYA_UNET = [
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q',
    'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k',
    'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v',
    'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0',
    'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj',
    'down_blocks.0.attentions.0.proj_in',
    'mid_block.attentions.0.transformer_blocks.0.attn2.to_k',
    'up_blocks.1.attentions.2.proj_out',
    'down_blocks.0.resnets.0.conv1',
    'down_blocks.0.resnets.0.time_emb_proj',
]
KOHYA_TE = ['encoder.layers.0.self_attn.q_proj', 'encoder.layers.0.self_attn.k_proj', 'encoder.layers.1.self_attn.v_proj', 'encoder.layers.1.mlp.fc1']
PEFT_UNET = [
    ('unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_{}.weight', 'up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q', 'peft'),
    ('unet.mid_block.attentions.0.proj_in.lora_{}.weight', 'mid_block.attentions.0.proj_in', 'peft'),
    ('unet.down_blocks.0.attentions.1.transformer_blocks.0.attn2.processor.to_k_lora.{}.weight', 'down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k', 'old'),
    ('unet.down_blocks.0.attentions.1.transformer_blocks.0.attn2.processor.to_out_lora.{}.weight', 'down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0', 'old'),
]
PEFT_TE = [('text_encoder.text_model.encoder.layers.1.self_attn.v_proj.lora_{}.weight', 'encoder.layers.1.self_attn.v_proj', 'peft')]


def make_loras(unet, te):
    """Writes both files; returns, per LoRA, its modules: (part, module path, down, up, scale) in float64."""
    unet_index, te_index = weight_index(unet), weight_index(te)
    kohya, kohya_modules = {}, []
    rank, alpha = 4, 2.0
    for part, index, model, modules in (('unet', unet_index, unet, KOHYA_UNET), ('te', te_index, te, KOHYA_TE)):
        for module in modules:
            init, op = index[module]
            down, up = lora_pair(torch_shape_of(model, init, op), rank)
            prefix = 'lora_unet_' if part == 'unet' else 'lora_te_text_model_'
            key = prefix + module.replace('.', '_')
            kohya[key + '.lora_down.weight'] = down.astype(np.float16)
            kohya[key + '.lora_up.weight'] = up.astype(np.float16)
            kohya[key + '.alpha'] = np.array(alpha, dtype=np.float16)
            # The merge uses what the file holds: the float16 values.
            kohya_modules.append((part, module, down.astype(np.float16).astype(np.float64), up.astype(np.float16).astype(np.float64), alpha / rank))
    # A module this model does not have (an SD 2 / other-architecture key): to be counted as unmatched.
    kohya['lora_unet_down_blocks_9_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight'] = np.zeros((4, 32), np.float16)
    kohya['lora_unet_down_blocks_9_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight'] = np.zeros((32, 4), np.float16)
    write_safetensors(os.path.join(OUT, 'tiny-kohya.safetensors'), kohya, {'ss_network_dim': str(rank), 'ss_network_alpha': str(alpha)})

    peft, peft_modules = {}, []
    for part, index, model, entries in (('unet', unet_index, unet, PEFT_UNET), ('te', te_index, te, PEFT_TE)):
        for pattern, module, style in entries:
            init, op = index[module]
            down, up = lora_pair(torch_shape_of(model, init, op), 2)
            names = ('A', 'B') if style == 'peft' else ('down', 'up')
            peft[pattern.format(names[0])] = down.astype(np.float32)
            peft[pattern.format(names[1])] = up.astype(np.float32)
            peft_modules.append((part, module, down.astype(np.float32).astype(np.float64), up.astype(np.float32).astype(np.float64), 1.0))
    write_safetensors(os.path.join(OUT, 'tiny-peft.safetensors'), peft, {'format': 'pt'})
    return {'tiny-kohya': kohya_modules, 'tiny-peft': peft_modules}


def merged(model, modules, weights):
    """{initializer name: merged array (ONNX layout, float32)} for these LoRAs at these weights."""
    index = weight_index(model)
    base = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    result = {}
    for name, weight in weights:
        for module_path, down, up, scale in modules[name]:
            init, op = index[module_path]
            current = result.get(init, base[init].astype(np.float64))
            torch_w = current.T if op == 'MatMul' else current
            out_dim, rank = up.shape[0], up.shape[1]
            delta = (up.reshape(out_dim, rank) @ down.reshape(rank, -1)).reshape(torch_w.shape)
            torch_w = torch_w + weight * scale * delta
            result[init] = torch_w.T if op == 'MatMul' else torch_w
    return {name: value.astype(np.float32) for name, value in result.items()}


RUNNER = r"""
import { readFileSync, writeFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
const [teFile, unetFile, idsJson, inputsFile, outFile] = process.argv.slice(1);
const raw = readFileSync(inputsFile);
const inputs = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const te = await ort.InferenceSession.create(teFile);
const ids = Int32Array.from(JSON.parse(idsJson));
const hidden = (await te.run({ input_ids: new ort.Tensor('int32', ids, [1, 77]) }))[te.outputNames[0]].data;
const unet = await ort.InferenceSession.create(unetFile);
const sample = inputs.subarray(0, 256), context = inputs.subarray(256, 256 + 77 * 32);
const out = (await unet.run({ sample: new ort.Tensor('float32', sample, [1, 4, 8, 8]),
  timestep: new ort.Tensor('float32', Float32Array.of(500), [1]),
  encoder_hidden_states: new ort.Tensor('float32', context, [1, 77, 32]) }))[unet.outputNames[0]].data;
const all = new Float32Array(hidden.length + out.length); all.set(hidden); all.set(out, hidden.length);
writeFileSync(outFile, Buffer.from(all.buffer));
"""

# "dog in batman costume" (the ids of diffusers' tokenizer, checked by the clip-skip reference), padded with EOS.
INPUT_IDS = [49406, 1929, 530, 7223, 7235, 49407] + [49407] * 71

CASES = [
    {'id': 'kohya-0.7', 'loras': [['tiny-kohya', 0.7]]},
    {'id': 'peft-1', 'loras': [['tiny-peft', 1.0]]},
    {'id': 'both', 'loras': [['tiny-kohya', 0.7], ['tiny-peft', -0.5]]},
]


def main():
    os.makedirs(OUT, exist_ok=True)
    unet, te = load('unet'), load('text_encoder')
    loras = make_loras(unet, te)
    per_part = {n: {'unet': [m[1:] for m in mods if m[0] == 'unet'], 'te': [m[1:] for m in mods if m[0] == 'te']} for n, mods in loras.items()}
    fixed = np.concatenate([rng.standard_normal(256), rng.standard_normal(77 * 32)]).astype(np.float32)
    blob = [fixed]
    offset = fixed.size
    index = {'inputs': {'offset': 0, 'sample': [1, 4, 8, 8], 'timestep': 500, 'encoder_hidden_states': [1, 77, 32], 'input_ids': INPUT_IDS}, 'cases': []}
    with tempfile.TemporaryDirectory() as tmp:
        inputs_file = os.path.join(tmp, 'inputs.f32')
        fixed.tofile(inputs_file)
        for case in CASES:
            entry = {'id': case['id'], 'loras': case['loras'], 'initializers': {}}
            files = {}
            for part, model, key in (('text_encoder', te, 'te'), ('unet', unet, 'unet')):
                modules = {n: per_part[n][key] for n, _ in case['loras']}
                merged_inits = merged(model, modules, case['loras'])
                copy = onnx.ModelProto()
                copy.CopyFrom(model)
                for init in copy.graph.initializer:
                    if init.name in merged_inits:
                        init.CopyFrom(numpy_helper.from_array(merged_inits[init.name], init.name))
                    elif init.data_location == onnx.TensorProto.EXTERNAL:
                        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init), init.name))
                files[part] = os.path.join(tmp, f"{case['id']}-{part}.onnx")
                onnx.save(copy, files[part])
                for name, value in sorted(merged_inits.items()):
                    entry['initializers'][f'{part}/{name}'] = {'offset': offset, 'shape': list(value.shape)}
                    blob.append(value.ravel())
                    offset += value.size
            out_file = os.path.join(tmp, 'out.f32')
            subprocess.run(['node', '--input-type=module', '-e', RUNNER, files['text_encoder'], files['unet'], json.dumps(INPUT_IDS), inputs_file, out_file], check=True)
            outputs = np.fromfile(out_file, dtype=np.float32)
            entry['textEncoderOutput'] = {'offset': offset, 'shape': [1, 77, 32]}
            entry['unetOutput'] = {'offset': offset + 77 * 32, 'shape': [1, 4, 8, 8]}
            blob.append(outputs)
            offset += outputs.size
            index['cases'].append(entry)
    # A1111's `Lora hashes` value for a .safetensors file: sha256 of the bytes after the header (the "addnet" hash,
    # modules/hashes.py with use_addnet_hash), first 12 hex digits (extensions-builtin/Lora/network.py set_hash).
    index['hashes'] = {}
    for name in ('tiny-kohya', 'tiny-peft'):
        with open(os.path.join(OUT, f'{name}.safetensors'), 'rb') as file:
            data = file.read()
        header_length = struct.unpack('<Q', data[:8])[0]
        index['hashes'][name] = hashlib.sha256(data[8 + header_length:]).hexdigest()[:12]
    np.concatenate(blob).astype('<f4').tofile(os.path.join(OUT, 'expected.f32'))
    with open(os.path.join(OUT, 'expected.json'), 'w') as file:
        json.dump(index, file, indent=1)
        file.write('\n')
    print(f'wrote {OUT}: {len(CASES)} cases, {offset} floats', file=sys.stderr)


if __name__ == '__main__':
    main()
