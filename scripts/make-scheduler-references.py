#!/usr/bin/env python3
"""
Writes test/fixtures/reference/schedulers-more.json: diffusers' own numbers for the schedulers added after the first
set (Heun, UniPC, DPM++ 2M SDE, LCM), for test/diffusion/schedulers-more.test.ts.

    /usr/bin/python3 scripts/make-scheduler-references.py --diffusers /path/to/diffusers [--out FILE]

`--diffusers` is a checkout of github.com/huggingface/diffusers (the directory holding src/diffusers). Only its
scheduler modules are imported (scheduling_utils.py and the four scheduling_*.py below), read straight from the
checkout; nothing of diffusers is copied into this project.

Made with Debian bookworm's python3-torch 1.13.1 (CPU; its torch.__version__ reads 1.13.0a0), python3-numpy 1.24.2
and python3-scipy 1.10.1, run by /usr/bin/python3 (3.11); diffusers at
the commit recorded in the output's "generator" block. huggingface_hub and transformers are not installable there, so
the few names the scheduler modules import from the rest of the package are stubbed here, with the behaviour the
schedulers rely on:

- diffusers.configuration_utils: `register_to_config` records the __init__ arguments (defaults filled in) as
  `self.config` (attribute access, as diffusers' FrozenDict gives) before __init__ runs; `ConfigMixin.from_config`
  passes the config keys the class's __init__ takes, minus those listed in `_use_default_values`, then the overrides
  (diffusers' `extract_init_dict` does the same for these configs). Saving/loading files is not stubbed.
- diffusers.utils: `BaseOutput` (a plain base for the output dataclasses; steps are called with return_dict=False),
  `PushToHubMixin` (empty), `is_scipy_available`, `deprecate` (ignored: only the deprecated-argument warnings use it),
  `logging.get_logger` (the standard library's).
- diffusers.utils.torch_utils.randn_tensor: `torch.randn(shape, generator=generator, device="cpu", dtype=dtype,
  layout=torch.strided)`, which is what diffusers' randn_tensor does for one CPU generator and a CPU tensor.
- huggingface_hub.utils.validate_hf_hub_args (imported by scheduling_utils.py): the identity decorator.

Trajectories: SD 1.5's scheduler config with the listed changes, a 1×4×4×4 latent `randn(generator) ·
init_noise_sigma` from `torch.Generator("cpu").manual_seed(seed)`, then for each timestep t (loop index i) a fake
UNet output `0.5 · scale_model_input(x, t) + float32(scale · 0.8 · cos(0.37k + 1.3i))` (k = flat element index) and
`x = step(output, t, x[, generator])`; the noise of DPM++ SDE and LCM comes from the same generator, as in diffusers'
pipelines. The latents after every step are recorded (float32 values, 9 significant digits).

UniPC's bh1 solver and predict_x0=False end in NaN in diffusers when the final sigma is 0 (B(h) = −h and
σ_t·(e^h − 1) become −∞·0 and 0·∞ on the last step), so their cases use final_sigmas_type "sigma_min".

torch 1.13's float32 linspace differs from torch 2's in the last bit of some betas (so of some sigmas: σ_max is
14.614645 here, 14.6146469 under torch 2, which the project's schedulers follow). That is far below the tests'
tolerance, except where a schedule truncates a timestep that lands on an integer: UniPC's exponential sigmas span
exactly σ_min … σ_max, whose first timestep is 999 here and 998.9999997 → 998 under torch 2. Its case pins
sigma_min/sigma_max in the config instead (which also exercises those keys).
"""
import argparse
import functools
import importlib
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
import torch

# SD 1.5's scheduler/scheduler_config.json (the same as schedulers.json's).
SD15 = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# Our scheduler name → diffusers module, class, and the from_config overrides the name itself implies.
OURS = {
    "heun": ("scheduling_heun_discrete", "HeunDiscreteScheduler", {}),
    "unipc": ("scheduling_unipc_multistep", "UniPCMultistepScheduler", {}),
    "dpmpp_2m_sde": ("scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "lcm": ("scheduling_lcm", "LCMScheduler", {}),
}

STEP_COUNTS = [1, 2, 4, 10, 20, 25, 30, 50]

# name → (our scheduler, overrides the user chooses: use_karras_sigmas / timestep_spacing)
TABLES = {
    "heun": ("heun", {}),
    "heun_karras": ("heun", {"use_karras_sigmas": True}),
    "heun_trailing": ("heun", {"timestep_spacing": "trailing"}),
    "unipc": ("unipc", {}),
    "unipc_karras": ("unipc", {"use_karras_sigmas": True}),
    "unipc_leading": ("unipc", {"timestep_spacing": "leading"}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "dpmpp_2m_sde_karras": ("dpmpp_2m_sde", {"use_karras_sigmas": True}),
    "lcm": ("lcm", {}),
}

# id, our scheduler, config changes, config keys removed, user overrides, steps, seed, output scale
TRAJECTORIES = [
    ("heun", "heun", {}, [], {}, 10, 101, 1.0),
    ("heun_1", "heun", {}, [], {}, 1, 102, 1.0),
    ("heun_karras", "heun", {}, [], {"use_karras_sigmas": True}, 10, 103, 1.0),
    ("heun_leading_v", "heun", {"prediction_type": "v_prediction"}, [], {"timestep_spacing": "leading"}, 8, 104, 1.0),
    ("heun_trailing", "heun", {}, [], {"timestep_spacing": "trailing"}, 7, 105, 1.0),
    ("heun_sample", "heun", {"prediction_type": "sample"}, [], {}, 6, 106, 1.0),
    ("heun_exp", "heun", {"use_exponential_sigmas": True}, [], {}, 9, 107, 1.0),
    ("heun_clip", "heun", {"clip_sample": True, "clip_sample_range": 1.5}, [], {}, 8, 108, 3.0),
    ("unipc", "unipc", {}, [], {}, 10, 201, 1.0),
    ("unipc_1", "unipc", {}, [], {}, 1, 202, 1.0),
    ("unipc_2", "unipc", {}, [], {}, 2, 203, 1.0),
    ("unipc_20", "unipc", {}, [], {}, 20, 204, 1.0),
    ("unipc_karras", "unipc", {}, [], {"use_karras_sigmas": True}, 20, 205, 1.0),
    ("unipc_order3", "unipc", {"solver_order": 3}, [], {}, 12, 206, 1.0),
    ("unipc_order3_no_lower_final", "unipc", {"solver_order": 3, "lower_order_final": False, "final_sigmas_type": "sigma_min"}, [], {}, 8, 207, 1.0),
    ("unipc_bh1", "unipc", {"solver_type": "bh1", "final_sigmas_type": "sigma_min"}, [], {}, 10, 208, 1.0),
    ("unipc_predict_eps", "unipc", {"predict_x0": False, "final_sigmas_type": "sigma_min"}, [], {}, 10, 209, 1.0),
    ("unipc_predict_eps_order3_v", "unipc", {"predict_x0": False, "solver_order": 3, "prediction_type": "v_prediction", "final_sigmas_type": "sigma_min"}, [], {}, 10, 210, 1.0),
    ("unipc_v_leading", "unipc", {"prediction_type": "v_prediction"}, [], {"timestep_spacing": "leading"}, 10, 211, 1.0),
    ("unipc_sample_trailing", "unipc", {"prediction_type": "sample"}, [], {"timestep_spacing": "trailing"}, 7, 212, 1.0),
    ("unipc_disable_corrector", "unipc", {"disable_corrector": [0, 3]}, [], {}, 8, 213, 1.0),
    ("unipc_exp", "unipc", {"use_exponential_sigmas": True, "sigma_min": 0.05, "sigma_max": 14.0}, [], {}, 10, 214, 1.0),
    ("unipc_karras_sigma_min", "unipc", {"final_sigmas_type": "sigma_min"}, [], {"use_karras_sigmas": True}, 10, 215, 1.0),
    ("unipc_zsnr", "unipc", {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}, [], {"timestep_spacing": "trailing"}, 10, 216, 1.0),
    ("dpmpp_2m_sde", "dpmpp_2m_sde", {}, [], {}, 10, 301, 1.0),
    ("dpmpp_2m_sde_25", "dpmpp_2m_sde", {}, [], {}, 25, 302, 1.0),
    ("dpmpp_2m_sde_karras", "dpmpp_2m_sde", {}, [], {"use_karras_sigmas": True}, 20, 303, 1.0),
    ("dpmpp_2m_sde_heun", "dpmpp_2m_sde", {"solver_type": "heun"}, [], {}, 10, 304, 1.0),
    ("dpmpp_2m_sde_v", "dpmpp_2m_sde", {"prediction_type": "v_prediction"}, [], {}, 10, 305, 1.0),
    ("dpmpp_2m_sde_sigma_min", "dpmpp_2m_sde", {"final_sigmas_type": "sigma_min"}, [], {"use_karras_sigmas": True}, 12, 306, 1.0),
    ("dpmpp_2m_sde_1", "dpmpp_2m_sde", {}, [], {}, 1, 307, 1.0),
    ("lcm", "lcm", {}, [], {}, 4, 401, 1.0),
    ("lcm_1", "lcm", {}, [], {}, 1, 402, 1.0),
    ("lcm_8", "lcm", {}, [], {}, 8, 403, 1.0),
    ("lcm_50", "lcm", {}, [], {}, 50, 404, 1.0),
    ("lcm_v", "lcm", {"prediction_type": "v_prediction"}, [], {}, 4, 405, 1.0),
    ("lcm_sample", "lcm", {"prediction_type": "sample"}, [], {}, 4, 406, 1.0),
    ("lcm_clip", "lcm", {"clip_sample": True}, [], {}, 6, 407, 3.0),
    ("lcm_original_steps", "lcm", {"original_inference_steps": 100, "timestep_scaling": 5.0}, [], {}, 6, 408, 1.0),
    ("lcm_zsnr", "lcm", {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}, [], {}, 4, 409, 1.0),
]


def install_stubs(diffusers_root: str, package_dir: str) -> None:
    """A `diffusers` package in package_dir: stub modules plus links to the real scheduler files."""
    source = os.path.join(diffusers_root, "src", "diffusers", "schedulers")
    os.makedirs(os.path.join(package_dir, "diffusers", "schedulers"))
    os.makedirs(os.path.join(package_dir, "diffusers", "utils"))
    with open(os.path.join(package_dir, "diffusers", "__init__.py"), "w") as f:
        f.write('__version__ = "stub"\n')
    with open(os.path.join(package_dir, "diffusers", "schedulers", "__init__.py"), "w") as f:
        f.write("")
    for module in ["scheduling_utils"] + [module for module, _, _ in OURS.values()]:
        os.symlink(os.path.join(source, module + ".py"), os.path.join(package_dir, "diffusers", "schedulers", module + ".py"))

    config_module = types.ModuleType("diffusers.configuration_utils")

    def register_to_config(init):
        signature = inspect.signature(init)

        @functools.wraps(init)
        def inner(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            values.pop("self")
            self._config = types.SimpleNamespace(**values)
            init(self, *args, **kwargs)

        return inner

    class ConfigMixin:
        config_name = "scheduler_config.json"

        @property
        def config(self):
            return self._config

        def register_to_config(self, **kwargs):
            for key, value in kwargs.items():
                setattr(self._config, key, value)

        @classmethod
        def from_config(cls, config, **overrides):
            parameters = inspect.signature(cls.__init__).parameters
            defaults_used = set(config.get("_use_default_values", []))
            init = {k: v for k, v in config.items() if k in parameters and k != "self" and k not in defaults_used}
            init.update(overrides)
            return cls(**init)

    config_module.ConfigMixin = ConfigMixin
    config_module.register_to_config = register_to_config

    utils_module = types.ModuleType("diffusers.utils")
    utils_module.__path__ = []

    class BaseOutput:
        pass

    class PushToHubMixin:
        pass

    utils_module.BaseOutput = BaseOutput
    utils_module.PushToHubMixin = PushToHubMixin
    utils_module.is_scipy_available = lambda: importlib.util.find_spec("scipy") is not None
    utils_module.deprecate = lambda *args, **kwargs: None
    utils_module.logging = types.SimpleNamespace(get_logger=logging.getLogger)

    torch_utils_module = types.ModuleType("diffusers.utils.torch_utils")

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        assert generator is None or isinstance(generator, torch.Generator) and generator.device.type == "cpu"
        return torch.randn(shape, generator=generator, device="cpu", dtype=dtype, layout=layout or torch.strided)

    torch_utils_module.randn_tensor = randn_tensor
    utils_module.torch_utils = torch_utils_module

    hub_module = types.ModuleType("huggingface_hub")
    hub_module.__path__ = []
    hub_utils_module = types.ModuleType("huggingface_hub.utils")
    hub_utils_module.validate_hf_hub_args = lambda function: function
    hub_module.utils = hub_utils_module

    sys.modules.update(
        {
            "diffusers.configuration_utils": config_module,
            "diffusers.utils": utils_module,
            "diffusers.utils.torch_utils": torch_utils_module,
            "huggingface_hub": hub_module,
            "huggingface_hub.utils": hub_utils_module,
        }
    )
    sys.path.insert(0, package_dir)


def scheduler_class(ours: str):
    module, class_name, _ = OURS[ours]
    return getattr(importlib.import_module(f"diffusers.schedulers.{module}"), class_name)


def build(ours: str, changes: dict, removed: list, overrides: dict):
    config = {**SD15, **changes}
    for key in removed:
        del config[key]
    _, _, implied = OURS[ours]
    return scheduler_class(ours).from_config(config, **implied, **overrides)


def f32(values) -> list:
    """float32 values as JSON numbers with 9 significant digits (enough to give back the exact float32)."""
    return [float(f"{float(v):.9g}") for v in np.asarray(values, dtype=np.float32).reshape(-1)]


def table(ours: str, overrides: dict) -> dict:
    module, class_name, implied = OURS[ours]
    out = {"scheduler": ours, "class": class_name, "class_overrides": implied, "overrides": overrides}
    for steps in STEP_COUNTS:
        scheduler = build(ours, {}, [], overrides)
        scheduler.set_timesteps(steps)
        entry = {"timesteps": f32(scheduler.timesteps.to(torch.float32))}
        sigmas = getattr(scheduler, "sigmas", None)
        if ours != "lcm" and sigmas is not None:
            entry["sigmas"] = f32(sigmas)
        entry["init_noise_sigma"] = float(f"{float(scheduler.init_noise_sigma):.9g}")
        out[str(steps)] = entry
    return out


def trajectory(case) -> dict:
    case_id, ours, changes, removed, overrides, steps, seed, scale = case
    scheduler = build(ours, changes, removed, overrides)
    scheduler.set_timesteps(steps)
    generator = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn((1, 4, 4, 4), generator=generator, dtype=torch.float32) * scheduler.init_noise_sigma
    count = latents.numel()
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    after = []
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(latents, t)
        wave = torch.tensor([scale * 0.8 * math.cos(0.37 * k + 1.3 * i) for k in range(count)], dtype=torch.float32).reshape(latents.shape)
        output = 0.5 * model_input + wave
        kwargs = {"generator": generator} if takes_generator else {}
        latents = scheduler.step(output, t, latents, return_dict=False, **kwargs)[0]
        after.append(f32(latents))
    return {
        "id": case_id,
        "scheduler": ours,
        "config_changes": changes,
        "config_removed": removed,
        "overrides": overrides,
        "steps": steps,
        "seed": seed,
        "scale": scale,
        "timesteps": f32(scheduler.timesteps.to(torch.float32)),
        "latents_after_each_step": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusers", required=True, help="a diffusers checkout (the directory holding src/diffusers)")
    parser.add_argument("--commit", help="the diffusers commit, if the checkout is not a git work tree")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "reference", "schedulers-more.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    commit = args.commit
    if commit is None:
        commit = subprocess.run(["git", "-C", args.diffusers, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()

    with tempfile.TemporaryDirectory() as package_dir:
        install_stubs(args.diffusers, package_dir)
        reference = {
            "generator": {
                "script": "scripts/make-scheduler-references.py",
                "diffusers_commit": commit,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "python": sys.version.split()[0],
            },
            "scheduler_config": SD15,
            "step_counts": STEP_COUNTS,
            "tables": {name: table(ours, overrides) for name, (ours, overrides) in TABLES.items()},
            "trajectories": [trajectory(case) for case in TRAJECTORIES],
        }
    with open(args.out, "w") as f:
        json.dump(reference, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out}: {len(reference['tables'])} tables, {len(reference['trajectories'])} trajectories")


if __name__ == "__main__":
    main()
