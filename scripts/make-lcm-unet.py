#!/usr/bin/python3
"""Make test/fixtures/tiny-lcm/: the tiny SD 1.5 fixture with an LCM-distilled UNet's interface, and the guidance
embeddings diffusers would feed it.

Why: LCM-distilled SD 1.5 UNets (e.g. SimianLuo/LCM_Dreamshaper_v7, `time_cond_proj_dim` 256) take a fourth input,
`timestep_cond` [batch, 256]: the guidance scale as an embedding, instead of classifier-free guidance's second batch
half. No such export can be downloaded here, so this script adds that input to tiny-sd's UNet by graph surgery,
exactly where diffusers' `TimestepEmbedding.forward` adds it:

    sample = sample + self.cond_proj(condition)      # cond_proj = nn.Linear(cond_proj_dim, in_channels, bias=False)
    sample = self.linear_1(sample)

i.e. before `time_embedding.linear_1` (the Gemm fed by the time projection's Cast): a MatMul of `timestep_cond` with
a random (seeded) weight [256, in_channels], no bias, Add-ed to linear_1's input. With `timestep_cond` all zeros the
UNet computes exactly what tiny-sd's does (tested). Everything else is tiny-sd's, byte for byte (the UNet's
external weights file `weights.pb` included: the new weight is stored in model.onnx), except
`scheduler/scheduler_config.json`, which names LCMScheduler with the config LCM SD 1.5 models ship.

It also writes `test/fixtures/reference/lcm-guidance-embedding.json`: diffusers'
`LatentConsistencyModelPipeline.get_guidance_scale_embedding(w, 256)` for w = guidance_scale − 1 at a few guidance
scales, computed here in numpy from the formula in pipeline_latent_consistency_text2img.py (w·1000, half = d/2,
freqs = exp(−log(10000)/(half − 1) · arange(half)), [sin(w·freqs), cos(w·freqs)], float32 as torch computes it).

Run by hand (deterministic; Debian's python3-onnx and numpy):

    /usr/bin/python3 scripts/make-lcm-unet.py      # from the repository root
"""

import json
import os
import shutil

import numpy
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "test", "fixtures", "tiny-sd")
TARGET = os.path.join(ROOT, "test", "fixtures", "tiny-lcm")
REFERENCE = os.path.join(ROOT, "test", "fixtures", "reference", "lcm-guidance-embedding.json")
COND_DIM = 256
COPIED = ["model_index.json", "text_encoder/model.onnx", "vae_decoder/model.onnx", "unet/weights.pb",
          "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
          "tokenizer/vocab.json"]
# LCMScheduler as LCM-distilled SD 1.5 models configure it (SD 1.5's betas, 50 distillation steps).
SCHEDULER = {
    "_class_name": "LCMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "original_inference_steps": 50,
    "prediction_type": "epsilon",
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "timestep_scaling": 10.0,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def guidance_scale_embedding(w, embedding_dim):
    """diffusers' get_guidance_scale_embedding, in numpy float32 as torch computes it in float32."""
    w = numpy.asarray(w, dtype=numpy.float32) * numpy.float32(1000.0)
    half_dim = embedding_dim // 2
    emb = numpy.float32(numpy.log(numpy.float32(10000.0))) / numpy.float32(half_dim - 1)
    emb = numpy.exp(numpy.arange(half_dim, dtype=numpy.float32) * -emb).astype(numpy.float32)
    emb = w[:, None] * emb[None, :]
    emb = numpy.concatenate([numpy.sin(emb), numpy.cos(emb)], axis=1).astype(numpy.float32)
    if embedding_dim % 2 == 1:
        emb = numpy.pad(emb, ((0, 0), (0, 1)))
    return emb


def add_timestep_cond(model):
    graph = model.graph
    linear_1 = next(node for node in graph.node if node.name == "/time_embedding/linear_1/Gemm")
    weight = next(init for init in graph.initializer if init.name == "time_embedding.linear_1.weight")
    in_channels = weight.dims[1]  # Gemm transB: weight is [out, in], as torch's Linear
    projection = numpy.random.default_rng(20261206).normal(0, 0.05, (COND_DIM, in_channels)).astype(numpy.float32)
    graph.initializer.append(numpy_helper.from_array(projection, "time_embedding.cond_proj.weight_transposed"))
    graph.input.append(helper.make_tensor_value_info("timestep_cond", TensorProto.FLOAT, ["batch", COND_DIM]))
    time_input = linear_1.input[0]
    at = list(graph.node).index(linear_1)
    nodes = [
        helper.make_node("MatMul", ["timestep_cond", "time_embedding.cond_proj.weight_transposed"],
                         ["/time_embedding/cond_proj/MatMul_output_0"], name="/time_embedding/cond_proj/MatMul"),
        helper.make_node("Add", [time_input, "/time_embedding/cond_proj/MatMul_output_0"],
                         ["/time_embedding/Add_output_0"], name="/time_embedding/Add"),
    ]
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    linear_1.input[0] = "/time_embedding/Add_output_0"
    return in_channels


def main():
    if os.path.isdir(TARGET):
        shutil.rmtree(TARGET)
    for relative in COPIED:
        os.makedirs(os.path.dirname(os.path.join(TARGET, relative)), exist_ok=True)
        shutil.copyfile(os.path.join(SOURCE, relative), os.path.join(TARGET, relative))
    os.makedirs(os.path.join(TARGET, "scheduler"))
    with open(os.path.join(TARGET, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER, f, indent=2)
        f.write("\n")
    with open(os.path.join(TARGET, "model_index.json")) as f:
        index = json.load(f)
    index["scheduler"] = ["diffusers", "LCMScheduler"]
    for part in ["safety_checker", "feature_extractor", "vae_encoder"]:
        index.pop(part, None)
    index["requires_safety_checker"] = False
    with open(os.path.join(TARGET, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")

    # The proto only: the external initializers stay references to weights.pb, copied unchanged beside it.
    model = onnx.load(os.path.join(SOURCE, "unet", "model.onnx"), load_external_data=False)
    in_channels = add_timestep_cond(model)
    onnx.save(model, os.path.join(TARGET, "unet", "model.onnx"))

    scales = [1.0, 1.5, 2.0, 8.0]
    reference = {
        "generator": "scripts/make-lcm-unet.py, numpy " + numpy.__version__,
        "embeddingDim": COND_DIM,
        "cases": [{"guidanceScale": g, "embedding": [float(v) for v in guidance_scale_embedding([g - 1], COND_DIM)[0]]}
                  for g in scales],
        # Odd dims pad one zero (diffusers' branch for them).
        "odd": {"guidanceScale": 4.0, "embeddingDim": 7,
                "embedding": [float(v) for v in guidance_scale_embedding([3.0], 7)[0]]},
    }
    with open(REFERENCE, "w") as f:
        json.dump(reference, f)
        f.write("\n")
    print(f"tiny-lcm written: timestep_cond [batch, {COND_DIM}] → cond_proj [{COND_DIM}, {in_channels}]")


if __name__ == "__main__":
    main()
