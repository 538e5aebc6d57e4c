#!/usr/bin/env python3
"""
Writes test/fixtures/reference/img2img/: diffusers' own StableDiffusionImg2ImgPipeline run over the tiny model, for
test/diffusion/img2img-reference.test.ts.

    /usr/bin/python3 scripts/make-img2img-references.py --diffusers DIR [--out DIR]

`--diffusers` is diffusers' source: a checkout (the directory holding src/diffusers) or a bare git directory (its HEAD
is read with `git show`). Nothing of diffusers is copied into this project. Made with Debian bookworm's python3-torch
1.13.1 (CPU; torch.__version__ reads 1.13.0a0), numpy 1.24.2, python3-onnx 1.12 and PIL, run by /usr/bin/python3;
the diffusers commit is recorded in each case.json's "generator" block.

What runs is diffusers' code, imported from its source files: the pipeline class
(pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py: __call__, encode_prompt, get_timesteps,
prepare_latents, retrieve_latents, retrieve_timesteps), VaeImageProcessor (image_processor.py: preprocess and
postprocess), the schedulers (schedulers/scheduling_*.py) and DiagonalGaussianDistribution (its class source, read from
models/autoencoders/vae.py). transformers, huggingface_hub and the rest of diffusers are not installed here, so the
names those modules import and never use on this path are inert stand-ins (see install_stubs), and:

- The models are the tiny model's ONNX graphs evaluated by scripts/onnx_torch.py (a torch interpreter, independent of
  ONNX Runtime): `unet(...)` runs unet/model.onnx; `vae.encode(x)` runs vae_encoder/model.onnx up to its quant_conv
  output (the moments, before the export's in-graph sampling) and returns diffusers' DiagonalGaussianDistribution of
  them; `vae.decode(z)` runs vae_decoder/model.onnx. The text embeddings are passed as `prompt_embeds` /
  `negative_prompt_embeds`, from text_encoder/model.onnx on the case's token ids (diffusers' tokenizer ids, taken from
  the txt2img cases, whose prompts these cases reuse). The safety checker is off.
- `randn_tensor` is diffusers' logic for a generator or a list of them; a torch.Generator("cpu") draws with torch,
  and for the `cuda` cases (no CUDA here) a CudaPhilox stand-in draws what torch.Generator("cuda") draws, torch's
  Philox4x32-10 + curand's Box–Muller for a tensor of at most one element per GPU thread, written from the
  description in src/diffusion/rng/philox.ts and checked here against test/fixtures/reference/torch-randn.json (made by
  torch on a GPU) before any case runs. Its tensors come back on the CPU, where the rest of the pipeline runs.

Before writing, the interpreter is checked against the txt2img reference cases (diffusers' StableDiffusionPipeline,
imported the same way, must reproduce cases/p1's final latents and p6's, a CUDA-generator case, within 1e-4 of their
magnitude).

Each case folder holds case.json (the parameters, timesteps, shapes, versions), init.png (the init image, at the
target size so no resize happens on either side), latents_step1.f32 and latents_final.f32 (after the first and the
last scheduler step, raw little-endian float32, C order) and image_<i>.png (`(x * 255).round()` of the pipeline's
"np" output).
"""
import argparse
import ast
import functools
import importlib.util
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_torch import OnnxTorchModel  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "test", "fixtures")
TINY = os.path.join(FIXTURES, "tiny-sd")
CASES = os.path.join(FIXTURES, "reference", "cases")

SCHEDULERS = {
    "pndm": ("scheduling_pndm", "PNDMScheduler"),
    "euler": ("scheduling_euler_discrete", "EulerDiscreteScheduler"),
    "euler_a": ("scheduling_euler_ancestral_discrete", "EulerAncestralDiscreteScheduler"),
    "dpmpp_2m": ("scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler"),
}

# id, prompt from txt2img case, scheduler, rng, seed (int, or list: one generator per image), n (num_images_per_prompt),
# steps, cfg, strength, width, height, init image pattern
IMG2IMG_CASES = [
    ("i1", "p1", "pndm", "cpu", 1055747, 1, 20, 7.5, 0.75, 64, 64, 0),
    ("i2", "p1", "euler_a", "cpu", 42, 1, 12, 7.0, 0.5, 64, 64, 1),
    ("i3", "p1", "euler_a", "cuda", 7, 1, 10, 1.0, 0.3, 64, 64, 0),
    ("i4", "p1", "dpmpp_2m", "cpu", [11, 12], 1, 15, 7.0, 0.9, 64, 64, 1),
    ("i5", "p1", "pndm", "cuda", 2024, 2, 8, 6.0, 1.0, 64, 64, 2),
    ("i6", "p1", "euler_a", "cpu", [5, 6], 1, 10, 0.0, 0.6, 64, 64, 2),
]


# ───────────────────────────── torch's CUDA generator, for the cuda cases ─────────────────────────────

class CudaPhilox:
    """torch.Generator("cuda").manual_seed(seed) for randn of tensors up to one element per GPU thread (see docstring)."""

    device = torch.device("cuda")

    def __init__(self, seed: int):
        self.seed = seed
        self.offset = 0

    def randn(self, shape) -> torch.Tensor:
        count = int(np.prod(shape))
        threads = -(-count // 256) * 256
        subsequence = np.arange(count, dtype=np.uint64)
        counter = np.uint64(self.offset // 4)
        c0 = np.full(count, counter & np.uint64(0xFFFFFFFF), dtype=np.uint64)
        c1 = np.full(count, counter >> np.uint64(32), dtype=np.uint64)
        c2 = subsequence & np.uint64(0xFFFFFFFF)
        c3 = subsequence >> np.uint64(32)
        k0 = np.uint64(self.seed & 0xFFFFFFFF)
        k1 = np.uint64((self.seed >> 32) & 0xFFFFFFFF)
        mask = np.uint64(0xFFFFFFFF)
        for _ in range(10):
            product0 = np.uint64(0xD2511F53) * c0
            product1 = np.uint64(0xCD9E8D57) * c2
            c0, c1, c2, c3 = ((product1 >> np.uint64(32)) ^ c1 ^ k0) & mask, product1 & mask, ((product0 >> np.uint64(32)) ^ c3 ^ k1) & mask, product0 & mask
            k0 = (k0 + np.uint64(0x9E3779B9)) & mask
            k1 = (k1 + np.uint64(0xBB67AE85)) & mask
        inv = np.float32(2.3283064e-10)
        inv_2pi = np.float32(inv * np.float32(6.2831855))
        u = c0.astype(np.float32) * inv + inv / np.float32(2)
        v = c1.astype(np.float32) * inv_2pi + inv_2pi / np.float32(2)
        radius = np.sqrt(np.float32(-2) * np.log(u.astype(np.float32))).astype(np.float32)
        values = (np.sin(v.astype(np.float64)).astype(np.float32) * radius).astype(np.float32)
        self.offset += ((count - 1) // (threads * 4) + 1) * 4
        return torch.from_numpy(values.reshape(shape))


def draw(generator, shape, dtype) -> torch.Tensor:
    if isinstance(generator, CudaPhilox):
        return generator.randn(tuple(shape)).to(dtype)
    return torch.randn(tuple(shape), generator=generator, device="cpu", dtype=dtype)


def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
    """diffusers' randn_tensor for CPU tensors: a list of generators draws row by row, one generator the whole shape."""
    batch_size = shape[0]
    if isinstance(generator, list) and len(generator) == 1:
        generator = generator[0]
    if isinstance(generator, list):
        row = (1,) + tuple(shape[1:])
        return torch.cat([draw(generator[i], row, dtype) for i in range(batch_size)], dim=0)
    return draw(generator, shape, dtype)


def check_cuda_stand_in() -> None:
    entries = json.load(open(os.path.join(FIXTURES, "reference", "torch-randn.json")))
    checked = 0
    for entry in entries:
        if entry["device"] != "cuda":
            continue
        generator = CudaPhilox(entry["seed"])
        values = generator.randn(tuple(entry["shape"])).numpy().reshape(-1)
        expected = entry.get("values") or entry.get("first64")
        assert np.abs(values[: len(expected)] - np.array(expected, dtype=np.float32)).max() < 1e-5, f"cuda randn seed {entry['seed']}"
        if "then_4x7" in entry:
            then = generator.randn((4, 7)).numpy().reshape(-1)
            assert np.abs(then - np.array(entry["then_4x7"], dtype=np.float32).reshape(-1)).max() < 1e-5, "cuda stream continues"
        checked += 1
    assert checked > 0
    print(f"CudaPhilox stand-in equals torch's CUDA randn on {checked} torch-randn.json entries")


# ───────────────────────────── diffusers' modules, with inert stand-ins for what they import ─────────────────────────────

class DiffusersSource:
    """diffusers' files from a checkout or a bare git directory."""

    def __init__(self, location: str):
        self.location = location
        self.bare = not os.path.isdir(os.path.join(location, "src", "diffusers"))

    def read(self, path: str) -> str:
        if self.bare:
            return subprocess.run(["git", "--git-dir", self.location, "show", f"HEAD:{path}"], capture_output=True, text=True, check=True).stdout
        return open(os.path.join(self.location, path)).read()

    def commit(self) -> str:
        args = ["git", "--git-dir", self.location] if self.bare else ["git", "-C", self.location]
        return subprocess.run(args + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def module(name: str, package: bool = False, **attributes) -> types.ModuleType:
    mod = types.ModuleType(name)
    if package:
        mod.__path__ = []
    for key, value in attributes.items():
        setattr(mod, key, value)
    sys.modules[name] = mod
    return mod


def inert(name: str):
    """A class that is imported (for isinstance checks and type hints) but never instantiated on this path."""
    return type(name, (), {})


def install_stubs(source: DiffusersSource, folder: str) -> None:
    def register_to_config(init):
        signature = inspect.signature(init)

        @functools.wraps(init)
        def inner(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            values.pop("self")
            values.pop("kwargs", None)
            self._config = types.SimpleNamespace(**values)
            init(self, *args, **kwargs)

        return inner

    class ConfigMixin:
        config_name = "config.json"

        @property
        def config(self):
            return self._config

        def register_to_config(self, **kwargs):
            if not hasattr(self, "_config"):
                self._config = types.SimpleNamespace()
            for key, value in kwargs.items():
                setattr(self._config, key, value)

        @classmethod
        def from_config(cls, config, **overrides):
            parameters = inspect.signature(cls.__init__).parameters
            init = {k: v for k, v in config.items() if k in parameters and k != "self"}
            init.update(overrides)
            return cls(**init)

    class BaseOutput:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    module("diffusers", package=True, __version__="stub")
    module("diffusers.configuration_utils", ConfigMixin=ConfigMixin, register_to_config=register_to_config, FrozenDict=dict)
    module(
        "diffusers.utils",
        package=True,
        BaseOutput=BaseOutput,
        PushToHubMixin=inert("PushToHubMixin"),
        CONFIG_NAME="config.json",
        PIL_INTERPOLATION={"lanczos": PIL.Image.Resampling.LANCZOS, "bicubic": PIL.Image.Resampling.BICUBIC, "bilinear": PIL.Image.Resampling.BILINEAR, "nearest": PIL.Image.Resampling.NEAREST, "linear": PIL.Image.Resampling.BILINEAR},
        USE_PEFT_BACKEND=False,
        deprecate=lambda *args, **kwargs: None,
        is_torch_xla_available=lambda: False,
        is_scipy_available=lambda: importlib.util.find_spec("scipy") is not None,
        logging=types.SimpleNamespace(get_logger=logging.getLogger),
        replace_example_docstring=lambda docstring: (lambda function: function),
        scale_lora_layers=lambda *args: None,
        unscale_lora_layers=lambda *args: None,
    )
    module("diffusers.utils.torch_utils", randn_tensor=randn_tensor)
    module("huggingface_hub", package=True)
    module("huggingface_hub.utils", validate_hf_hub_args=lambda function: function)
    module("packaging", package=True)
    module("packaging.version", parse=lambda text: tuple(int(p) for p in str(text).split(".")[:3] if p.isdigit()))
    sys.modules["packaging"].version = sys.modules["packaging.version"]
    module("transformers", **{name: inert(name) for name in ["CLIPImageProcessor", "CLIPTextModel", "CLIPTokenizer", "CLIPVisionModelWithProjection"]})
    module("diffusers.callbacks", MultiPipelineCallbacks=inert("MultiPipelineCallbacks"), PipelineCallback=inert("PipelineCallback"))
    module("diffusers.loaders", **{name: inert(name) for name in ["FromSingleFileMixin", "IPAdapterMixin", "StableDiffusionLoraLoaderMixin", "TextualInversionLoaderMixin"]})
    module("diffusers.models", package=True, **{name: inert(name) for name in ["AutoencoderKL", "ImageProjection", "UNet2DConditionModel"]})
    module("diffusers.models.lora", adjust_lora_scale_text_encoder=lambda *args: None)
    module("diffusers.schedulers", package=True, KarrasDiffusionSchedulers=inert("KarrasDiffusionSchedulers"))
    module("diffusers.pipelines", package=True)

    class DiffusionPipeline(ConfigMixin):
        """The few DiffusionPipeline members the pipelines call on this path."""

        def register_modules(self, **modules):
            for name, value in modules.items():
                setattr(self, name, value)

        @property
        def _execution_device(self):
            return torch.device("cpu")

        def progress_bar(self, total=None, iterable=None):
            class Bar:
                def __enter__(self):
                    return self

                def __exit__(self, *args):
                    return False

                def update(self, *args):
                    pass

            return Bar()

        def maybe_free_model_hooks(self):
            pass

    module("diffusers.pipelines.pipeline_utils", DiffusionPipeline=DiffusionPipeline, StableDiffusionMixin=inert("StableDiffusionMixin"))
    module("diffusers.pipelines.stable_diffusion", package=True, StableDiffusionPipelineOutput=BaseOutput)
    module("diffusers.pipelines.stable_diffusion.pipeline_output", StableDiffusionPipelineOutput=BaseOutput)
    module("diffusers.pipelines.stable_diffusion.safety_checker", StableDiffusionSafetyChecker=inert("StableDiffusionSafetyChecker"))

    def load(name: str, path: str) -> types.ModuleType:
        file = os.path.join(folder, name + ".py")
        with open(file, "w") as f:
            f.write(source.read(path))
        spec = importlib.util.spec_from_file_location(name, file)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, mod)
        return mod

    load("diffusers.image_processor", "src/diffusers/image_processor.py")
    load("diffusers.schedulers.scheduling_utils", "src/diffusers/schedulers/scheduling_utils.py")
    for scheduler_module, _ in SCHEDULERS.values():
        load(f"diffusers.schedulers.{scheduler_module}", f"src/diffusers/schedulers/{scheduler_module}.py")
    load("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion", "src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py")
    load("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img", "src/diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py")

    # DiagonalGaussianDistribution: its class source from vae.py, run with diffusers' names it uses.
    vae_source = source.read("src/diffusers/models/autoencoders/vae.py")
    tree = ast.parse(vae_source)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiagonalGaussianDistribution")
    namespace = {"torch": torch, "np": np, "randn_tensor": randn_tensor}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "vae.py", "exec"), namespace)
    module("diffusers.models.autoencoders", package=True)
    module("diffusers.models.autoencoders.vae", DiagonalGaussianDistribution=namespace["DiagonalGaussianDistribution"])


# ───────────────────────────── the tiny model as torch modules over the ONNX graphs ─────────────────────────────

class TinyUnet:
    def __init__(self):
        self.graph = OnnxTorchModel(os.path.join(TINY, "unet", "model.onnx"))
        self.config = types.SimpleNamespace(time_cond_proj_dim=None, in_channels=4, sample_size=64)
        self.dtype = torch.float32

    def __call__(self, sample, t, encoder_hidden_states=None, timestep_cond=None, cross_attention_kwargs=None, added_cond_kwargs=None, return_dict=True):
        timestep = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(sample.shape[0]).contiguous()
        out = self.graph.run({"sample": sample.float(), "timestep": timestep, "encoder_hidden_states": encoder_hidden_states.float()})
        return (next(iter(out.values())),)


class TinyVae:
    def __init__(self):
        self.encoder = OnnxTorchModel(os.path.join(TINY, "vae_encoder", "model.onnx"))
        self.moments = self.encoder.node_by_name_pattern("Conv", "/quant_conv/").output[0]
        self.decoder = OnnxTorchModel(os.path.join(TINY, "vae_decoder", "model.onnx"))
        self.config = types.SimpleNamespace(scaling_factor=0.18215, block_out_channels=[32, 32, 32, 32], force_upcast=False, shift_factor=None, latents_mean=None, latents_std=None)
        self.dtype = torch.float32

    def encode(self, image):
        distribution = sys.modules["diffusers.models.autoencoders.vae"].DiagonalGaussianDistribution
        moments = self.encoder.run({"sample": image.float()}, [self.moments])[self.moments]
        return types.SimpleNamespace(latent_dist=distribution(moments))

    def decode(self, latents, return_dict=True, generator=None):
        return (self.decoder.run({"latent_sample": latents.float()})["sample"],)


def text_embeddings(ids, batch: int) -> torch.Tensor:
    encoder = text_embeddings.encoder
    out = encoder.run({"input_ids": torch.tensor([ids], dtype=torch.int32)})["last_hidden_state"]
    return out.repeat(batch, 1, 1) if batch > 1 else out


def scheduler_for(name: str):
    module_name, class_name = SCHEDULERS[name]
    config = json.load(open(os.path.join(TINY, "scheduler", "scheduler_config.json")))
    cls = getattr(sys.modules[f"diffusers.schedulers.{module_name}"], class_name)
    return cls.from_config(config)


def generator_for(rng: str, seed):
    def one(s):
        return torch.Generator("cpu").manual_seed(s) if rng == "cpu" else CudaPhilox(s)

    return [one(s) for s in seed] if isinstance(seed, list) else one(seed)


def pipeline_of(kind: str, scheduler):
    pipelines = sys.modules["diffusers.pipelines.stable_diffusion"]
    cls = (pipelines.pipeline_stable_diffusion_img2img.StableDiffusionImg2ImgPipeline if kind == "img2img" else pipelines.pipeline_stable_diffusion.StableDiffusionPipeline)
    return cls(vae=text_embeddings.vae, text_encoder=None, tokenizer=None, unet=text_embeddings.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)


def run(pipe, **kwargs):
    steps = []

    def keep(pipeline, index, t, tensors):
        steps.append(tensors["latents"].clone())
        return tensors

    images = pipe(**kwargs, output_type="np", return_dict=False, callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"])[0]
    return steps, images


def check_txt2img() -> None:
    """The interpreter and stand-ins through diffusers' StableDiffusionPipeline reproduce the txt2img reference cases."""
    for case_id in ["p1", "p6"]:
        case = json.load(open(os.path.join(CASES, case_id, "case.json")))
        if case["scheduler"] not in SCHEDULERS or case["n"] != 1:
            continue
        prompt = text_embeddings(case["input_ids"], 1)
        negative = text_embeddings(case["negative_input_ids"], 1)
        steps, _ = run(
            pipeline_of("txt2img", scheduler_for(case["scheduler"])),
            prompt_embeds=prompt, negative_prompt_embeds=negative, num_inference_steps=case["steps"], guidance_scale=case["cfg"],
            height=case["height"], width=case["width"], generator=generator_for(case["rng"], case["seed"]),
        )
        expected = np.fromfile(os.path.join(CASES, case_id, "latents_final.f32"), dtype="<f4")
        difference = np.abs(steps[-1].numpy().reshape(-1) - expected).max() / np.abs(expected).max()
        print(f"txt2img {case_id} ({case['scheduler']}, {case['rng']}): final latents within {difference:.2e} of diffusers' reference run")
        assert difference < 1e-4, f"the interpreter does not reproduce txt2img case {case_id}"


def init_image(pattern: int, width: int, height: int) -> PIL.Image.Image:
    """A smooth colour pattern (the VAE sees structure, not noise), deterministic, as an 8-bit RGB image."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = 0.7 * pattern
    r = 127.5 + 120 * np.sin(x / (6 + pattern) + phase)
    g = 127.5 + 120 * np.cos(y / (9 - pattern) - phase)
    b = 127.5 + 120 * np.sin((x + y) / 11 + 2 * phase)
    return PIL.Image.fromarray(np.stack([r, g, b], axis=-1).round().clip(0, 255).astype(np.uint8), "RGB")


def write_case(case, out_dir: str, commit: str) -> None:
    case_id, prompt_case, scheduler_name, rng, seed, n, steps, cfg, strength, width, height, pattern = case
    prompt_ref = json.load(open(os.path.join(CASES, prompt_case, "case.json")))
    folder = os.path.join(out_dir, case_id)
    os.makedirs(folder, exist_ok=True)
    image = init_image(pattern, width, height)
    image.save(os.path.join(folder, "init.png"))
    image = PIL.Image.open(os.path.join(folder, "init.png")).convert("RGB")
    batch = (len(seed) if isinstance(seed, list) else 1) * n
    per_prompt = n if not isinstance(seed, list) else len(seed)
    prompt = text_embeddings(prompt_ref["input_ids"], 1)
    negative = text_embeddings(prompt_ref["negative_input_ids"], 1)
    scheduler = scheduler_for(scheduler_name)
    steps_latents, images = run(
        pipeline_of("img2img", scheduler),
        prompt_embeds=prompt, negative_prompt_embeds=negative, image=image, strength=strength, num_inference_steps=steps,
        guidance_scale=cfg, num_images_per_prompt=per_prompt, generator=generator_for(rng, seed),
    )
    steps_latents[0].numpy().astype("<f4").tofile(os.path.join(folder, "latents_step1.f32"))
    steps_latents[-1].numpy().astype("<f4").tofile(os.path.join(folder, "latents_final.f32"))
    for index, pixels in enumerate(images):
        PIL.Image.fromarray((pixels * 255).round().astype(np.uint8)).save(os.path.join(folder, f"image_{index}.png"))
    meta = {
        "id": case_id,
        "prompt": prompt_ref["prompt"],
        "negative": prompt_ref["negative"],
        "input_ids": prompt_ref["input_ids"],
        "negative_input_ids": prompt_ref["negative_input_ids"],
        "scheduler": scheduler_name,
        "scheduler_class": SCHEDULERS[scheduler_name][1],
        "rng": rng,
        "seed": seed,
        "num_images_per_prompt": per_prompt,
        "n": batch,
        "steps": steps,
        "cfg": cfg,
        "strength": strength,
        "width": width,
        "height": height,
        "timesteps": [float(t) for t in scheduler.timesteps[-len(steps_latents):]],
        "denoising_steps": len(steps_latents),
        "latent_shape": list(steps_latents[-1].shape),
        "generator": {"script": "scripts/make-img2img-references.py", "diffusers_commit": commit, "torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
    }
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{case_id}: {scheduler_name} {rng} seed {seed} ×{per_prompt} strength {strength} cfg {cfg}: {len(steps_latents)} steps of {steps}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="diffusers' source: a checkout or a bare git directory")
    parser.add_argument("--out", default=os.path.join(FIXTURES, "reference", "img2img"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.backends.cudnn.allow_tf32 = False
    source = DiffusersSource(args.diffusers)
    commit = source.commit()
    check_cuda_stand_in()
    with tempfile.TemporaryDirectory() as folder:
        install_stubs(source, folder)
        text_embeddings.encoder = OnnxTorchModel(os.path.join(TINY, "text_encoder", "model.onnx"))
        text_embeddings.unet = TinyUnet()
        text_embeddings.vae = TinyVae()
        check_txt2img()
        for case in IMG2IMG_CASES:
            write_case(case, args.out, commit)


if __name__ == "__main__":
    main()
