#!/usr/bin/python3
"""Make model-folder variants of the tiny SD 1.5 fixture, shaped like the real exports users bring.

Why: the engine must read every model fact (tensor dtypes, external-data file names, tokenizer format) from the
model folder itself, never assume the layout of the one fixture it was written against. Real SD 1.5 ONNX folders
differ from `test/fixtures/tiny-sd` in ways we cannot download here, so this script derives them from it:

  test/fixtures/variants/fp16/            UNet, VAE decoder, VAE encoder and safety checker converted to float16
                                          (weights, activations, Cast targets and interface: every float32 tensor
                                          of the graph becomes float16, as in an fp16 export). The text encoder
                                          stays fp32 (the common case: an fp32 encoder feeding an fp16 UNet). The
                                          results differ from tiny-sd's by half-precision rounding of the weights
                                          and of every tensor crossing a model boundary.
  test/fixtures/variants/int64-timestep/  UNet whose `timestep` input is int64, cast to float inside (SD 1.4's
                                          official export, optimum's older exports).
  test/fixtures/variants/optimum-layout/  optimum's layout: model_index.json `_class_name: ORTStableDiffusionPipeline`,
                                          UNet external data in `model.onnx_data` (not `weights.pb`), component
                                          config.json files, a tokenizer folder with `tokenizer.json` and no
                                          vocab.json/merges.txt, and no exported safety checker.

How: it is a fixture generator, run by hand when tiny-sd or a variant's definition changes; CI and the tests use
the committed output and never run it. It needs Debian's python3-onnx (numpy comes with it):

    apt-get install -y python3-onnx
    /usr/bin/python3 scripts/make-model-variants.py      # from the repository root

It is deterministic (same input bytes give the same output bytes) and rewrites test/fixtures/variants/ from
scratch. Files that a variant does not change are copied byte for byte (never symlinked: git and CI must see plain
files), so git stores each of them once, as the same blob as in tiny-sd; the UNet's external weights are reused
unchanged where the variant keeps fp32 weights, only renamed for the optimum layout. The new bytes are the rewritten
graphs: about 3.5 MB for fp16 (its halved weights), under 0.5 MB for each of the others.
"""

import hashlib
import json
import os
import shutil
import sys

import numpy
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "test", "fixtures", "tiny-sd")
REFERENCE_TOKENIZER = os.path.join(ROOT, "test", "fixtures", "reference", "clip-tokenizer.json")
VARIANTS = os.path.join(ROOT, "test", "fixtures", "variants")

TYPE_NAMES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.INT64: "int64",
              TensorProto.INT32: "int32", TensorProto.BOOL: "bool"}


def log(message):
    print(message, flush=True)


def load_graph(path):
    """The model proto only: external initializers stay references (location/offset/length) to their data file."""
    return onnx.load(path, load_external_data=False)


def subgraphs(node):
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            yield from attribute.graphs


def rename_value(graph, old, new):
    """Renames one value everywhere it is produced or consumed, subgraphs included (they can read outer values)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for sub in subgraphs(node):
            rename_value(sub, old, new)
    for info in graph.value_info:
        if info.name == old:
            info.name = new


def retype_interface(model, inputs, outputs, tag):
    """Changes the declared element type of graph inputs and outputs, converting at the boundary with Cast nodes.

    inputs / outputs: {name: new elem_type}. The original graph keeps computing in its own types: an input `x` of
    new type T becomes `x` (T) -> Cast -> `x__<tag>` (original type), and every node that read `x` reads that;
    an output `y` is produced as `y__<tag>` (original type) and cast to `y` (T).
    """
    graph = model.graph
    head, tail = [], []
    for value in graph.input:
        if value.name not in inputs:
            continue
        original = value.type.tensor_type.elem_type
        inner = f"{value.name}__{tag}"
        rename_value(graph, value.name, inner)
        value.type.tensor_type.elem_type = inputs[value.name]
        head.append(helper.make_node("Cast", [value.name], [inner], name=f"{inner}_cast", to=original))
    for value in graph.output:
        if value.name not in outputs:
            continue
        inner = f"{value.name}__{tag}"
        rename_value(graph, value.name, inner)
        value.type.tensor_type.elem_type = outputs[value.name]
        tail.append(helper.make_node("Cast", [inner], [value.name], name=f"{inner}_cast", to=outputs[value.name]))
    missing = (set(inputs) - {v.name for v in graph.input}) | (set(outputs) - {v.name for v in graph.output})
    if missing:
        raise SystemExit(f"no graph input/output named {sorted(missing)}")
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)


def convert_to_float16(model):
    """A true fp16 model, as an fp16 export is: every float32 tensor of the graph becomes float16.

    Initializers, Constant / ConstantOfShape values, Cast targets, random-op dtypes, graph inputs, outputs and
    value_info all switch from float to float16, so the file holds half-precision weights and declares float16
    everywhere. The exceptions are inputs that ONNX requires to be float32 whatever the data type: Resize's `scales`
    (and its `roi`, kept as exported). ONNX Runtime's CPU provider runs such a graph by inserting its own Casts around
    the ops it has no float16 kernel for; GPU providers run it in half precision.
    """
    graph = model.graph
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    keep_float = set()
    for node in graph.node:
        if node.op_type == "Resize":
            keep_float.update(name for name in node.input[1:3] if name)
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == FLOAT and tensor.name not in keep_float:
            graph.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(numpy.float16), tensor.name))
    for node in graph.node:
        if list(subgraphs(node)):
            raise SystemExit(f"{node.op_type} {node.name} has a subgraph; this converter does not descend into them")
        for attribute in node.attribute:
            if node.op_type in ("Constant", "ConstantOfShape") and attribute.name == "value":
                if attribute.t.data_type == FLOAT and node.output[0] not in keep_float:
                    attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(numpy.float16), attribute.t.name))
            elif node.op_type == "Cast" and attribute.name == "to" and attribute.i == FLOAT:
                attribute.i = HALF
            elif node.op_type.startswith("Random") and attribute.name == "dtype" and attribute.i == FLOAT:
                attribute.i = HALF
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.tensor_type.elem_type == FLOAT and value.name not in keep_float:
            value.type.tensor_type.elem_type = HALF


def set_external_location(model, location):
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location


def external_locations(model):
    return sorted({entry.value for tensor in model.graph.initializer if tensor.data_location == TensorProto.EXTERNAL
                   for entry in tensor.external_data if entry.key == "location"})


def note(model, text):
    model.doc_string = text
    model.producer_name = "imagine scripts/make-model-variants.py"
    model.producer_version = "1"


def describe(model):
    def side(values):
        return ", ".join(f"{v.name} {TYPE_NAMES.get(v.type.tensor_type.elem_type, v.type.tensor_type.elem_type)}"
                         for v in values)
    return f"({side(model.graph.input)}) -> ({side(model.graph.output)})"


def save_model(model, folder, relative, external_data=None):
    """Writes the proto and checks it with ONNX's checker. Without external_data, external initializers stay
    references to the data file they already point to; with it, every initializer over 1 KiB is written to that file
    beside the model (as diffusers' exporter writes the UNet's weights.pb)."""
    path = os.path.join(folder, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if external_data:
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=external_data,
                  size_threshold=1024)
        log(f"  wrote   {os.path.join(os.path.dirname(relative), external_data)}")
    else:
        onnx.save(model, path)
    # With a path the checker resolves external data files next to the model, so a wrong location fails here.
    onnx.checker.check_model(path)
    log(f"  wrote   {relative}  {describe(model)}")


def copy(folder, relative, source_relative=None):
    source = os.path.join(SOURCE, source_relative or relative)
    target = os.path.join(folder, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    log(f"  copied  {relative}" + (f"  (from tiny-sd/{source_relative})" if source_relative else ""))


def write_json(folder, relative, data):
    path = os.path.join(folder, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    log(f"  wrote   {relative}")


def source_json(relative):
    with open(os.path.join(SOURCE, relative), encoding="utf-8") as handle:
        return json.load(handle)


def copy_shared(folder, parts):
    for relative in parts:
        copy(folder, relative)


TOKENIZER_FILES = ["tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
                   "tokenizer/special_tokens_map.json"]
COMMON = ["scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json"] + TOKENIZER_FILES


def make_fp16(folder):
    log("fp16: UNet, VAE decoder and encoder and safety checker converted to float16; fp32 text encoder")
    copy_shared(folder, ["model_index.json", "text_encoder/model.onnx"] + COMMON)
    for part in ["unet", "vae_decoder", "vae_encoder", "safety_checker"]:
        # The UNet's weights come in from weights.pb and go out, halved, to a new weights.pb.
        model = onnx.load(os.path.join(SOURCE, part, "model.onnx"), load_external_data=(part == "unet"))
        convert_to_float16(model)
        note(model, f"tiny-sd {part} converted to float16 (weights, activations and interface)")
        save_model(model, folder, f"{part}/model.onnx", external_data="weights.pb" if part == "unet" else None)


def make_int64_timestep(folder):
    log("int64-timestep: UNet timestep input int64, cast to float inside")
    copy_shared(folder, ["model_index.json", "text_encoder/model.onnx", "vae_decoder/model.onnx",
                         "vae_encoder/model.onnx", "safety_checker/model.onnx", "unet/weights.pb"] + COMMON)
    model = load_graph(os.path.join(SOURCE, "unet", "model.onnx"))
    retype_interface(model, {"timestep": TensorProto.INT64}, {}, "float")
    note(model, "tiny-sd unet with an int64 timestep input (cast to float inside), as SD 1.4's official export")
    save_model(model, folder, "unet/model.onnx")


def make_optimum_layout(folder):
    log("optimum-layout: ORTStableDiffusionPipeline, unet/model.onnx_data, tokenizer.json only, no safety checker")
    copy_shared(folder, ["text_encoder/model.onnx", "vae_decoder/model.onnx", "vae_encoder/model.onnx",
                         "scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json",
                         "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json"])
    index = source_json("model_index.json")
    index["_class_name"] = "ORTStableDiffusionPipeline"
    # optimum exports no safety checker; the pipeline config says so with nulls.
    index["safety_checker"] = [None, None]
    index["requires_safety_checker"] = False
    for part in ["text_encoder", "unet", "vae_decoder", "vae_encoder"]:
        index[part] = ["optimum", "ORTModel"]
    write_json(folder, "model_index.json", index)
    # optimum writes each component's config next to its model; the engine reads the VAE's scaling_factor from here.
    write_json(folder, "vae_decoder/config.json", {"_class_name": "AutoencoderKL", "latent_channels": 4,
                                                   "scaling_factor": 0.18215})
    write_json(folder, "unet/config.json", {"_class_name": "UNet2DConditionModel", "in_channels": 4,
                                            "out_channels": 4, "cross_attention_dim": 32})
    shutil.copyfile(REFERENCE_TOKENIZER, os.path.join(folder, "tokenizer", "tokenizer.json"))
    log("  copied  tokenizer/tokenizer.json  (from reference/clip-tokenizer.json; no vocab.json or merges.txt)")

    model = load_graph(os.path.join(SOURCE, "unet", "model.onnx"))
    set_external_location(model, "model.onnx_data")
    note(model, "tiny-sd unet with its external data named model.onnx_data, as optimum saves it")
    # Same weight bytes, same offsets: only the file name the initializers point to changes.
    copy(folder, "unet/model.onnx_data", "unet/weights.pb")
    save_model(model, folder, "unet/model.onnx")
    assert external_locations(model) == ["model.onnx_data"], external_locations(model)


def summarize(folder):
    total = 0
    digest = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                data = handle.read()
            total += len(data)
            digest.update(os.path.relpath(path, folder).encode() + b"\0" + hashlib.sha256(data).digest())
    return total, digest.hexdigest()[:16]


README = """# Model-folder variants of tiny-sd

Generated by `scripts/make-model-variants.py` (run by hand: `/usr/bin/python3 scripts/make-model-variants.py` with
Debian's python3-onnx); do not edit by hand. Each folder is `../tiny-sd` reshaped like a kind of real SD 1.5 ONNX
export, so tests can show that the engine reads dtypes, file names and the tokenizer format from the folder:

- `fp16/`: UNet, VAE decoder and encoder, safety checker converted to float16; fp32 text encoder.
- `int64-timestep/`: UNet with an int64 `timestep` input (SD 1.4's official export, older optimum exports).
- `optimum-layout/`: `ORTStableDiffusionPipeline`, UNet weights in `model.onnx_data`, `tokenizer/tokenizer.json`
  only, no safety checker.

Files a variant does not change are byte-for-byte copies of tiny-sd's, which git stores once.
`test/diffusion/model-variants.test.ts` runs diffusers' reference cases on each.
"""


def main():
    if not os.path.isfile(os.path.join(SOURCE, "model_index.json")):
        raise SystemExit(f"tiny model not found at {SOURCE}")
    log(f"onnx {onnx.__version__}; source {os.path.relpath(SOURCE, ROOT)}")
    if os.path.isdir(VARIANTS):
        shutil.rmtree(VARIANTS)
    builders = {"fp16": make_fp16, "int64-timestep": make_int64_timestep, "optimum-layout": make_optimum_layout}
    os.makedirs(VARIANTS)
    with open(os.path.join(VARIANTS, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(README)
    log(f"wrote {os.path.relpath(os.path.join(VARIANTS, 'README.md'), ROOT)}")
    for name, build in builders.items():
        folder = os.path.join(VARIANTS, name)
        os.makedirs(folder)
        build(folder)
        size, digest = summarize(folder)
        log(f"  => {os.path.relpath(folder, ROOT)}: {size / 1e6:.1f} MB on disk, content digest {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
