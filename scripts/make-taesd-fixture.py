#!/usr/bin/python3
"""Make the tiny TAESD preview decoders in test/fixtures/taesd/ and the outputs our decode must reproduce.

Why: live previews can decode through madebyollin's TAESD ("tiny autoencoder for Stable Diffusion") instead of the
colour map (src/diffusion/taesd.ts). The real decoder (about 5 MB) cannot be downloaded here, so the tests use the
same architecture with random weights and few channels, exported to ONNX as users' files are.

The architecture is taesd.py's `Decoder` (github.com/madebyollin/taesd), written out here:

    Clamp (tanh(x / 3) · 3), conv 3×3 4→C, ReLU,
    3 × Block, Upsample ×2, conv 3×3 (no bias),      # three stages, each doubling the size: 8× in all, as the VAE
    3 × Block, Upsample ×2, conv 3×3 (no bias),
    3 × Block, Upsample ×2, conv 3×3 (no bias),
    Block, conv 3×3 C→3
    Block(x) = ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x)

with C = 8 instead of 64. TAESD takes the latents as the UNet makes them (its latent scale factor is 1, not SD's
0.18215: taesd's README) and gives an image in [0, 1] (not clamped: the caller clamps). Two exports of one module:

  test/fixtures/taesd/taesd_decoder.onnx    madebyollin's convention: input `latents` [b, 4, h, w], output `image`
                                           [b, 3, 8h, 8w] in [0, 1].
  test/fixtures/taesd/vae_decoder/model.onnx  diffusers' convention (AutoencoderTiny exported by optimum): input
                                           `latent_sample`, output `sample` = 2 · image − 1, in [−1, 1] (DecoderTiny's
                                           `x.mul(2).sub(1)`).
  test/fixtures/taesd/expected.json        fixed latents (1 × 4 × 5 × 6, seeded) and the torch module's image for
                                           them ([0, 1] convention, before clamping), C order.

Run by hand when the definition changes (deterministic; Debian's python3-torch 1.13 and python3-onnx):

    /usr/bin/python3 scripts/make-taesd-fixture.py      # from the repository root

For `npm run bench:previews`, `--channels 64 --out FILE` writes only the real decoder's size (64 channels, 1.2 M
random weights) to FILE, in taesd.py's convention; nothing under test/ changes.
"""

import argparse
import json
import os

import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "taesd")
CHANNELS = 8


def conv(n_in, n_out, **kwargs):
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n), nn.ReLU(), conv(n, n))
        self.fuse = nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + x)


def decoder(c):
    stage = lambda: [Block(c), Block(c), Block(c), nn.Upsample(scale_factor=2), conv(c, c, bias=False)]
    return nn.Sequential(Clamp(), conv(4, c), nn.ReLU(), *stage(), *stage(), *stage(), Block(c), conv(c, 3))


class DiffusersConvention(nn.Module):
    """diffusers' DecoderTiny: the same layers, image scaled from [0, 1] to [−1, 1]."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, latent_sample):
        return self.inner(latent_sample).mul(2).sub(1)


def export(module, path, input_name, output_name):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(
        module,
        torch.zeros(1, 4, 8, 8),
        path,
        input_names=[input_name],
        output_names=[output_name],
        dynamic_axes={input_name: {0: "batch", 2: "height", 3: "width"}, output_name: {0: "batch", 2: "height", 3: "width"}},
        opset_version=14,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--out", help="write only this decoder file (for benchmarks)")
    args = parser.parse_args()
    torch.manual_seed(20261206)
    module = decoder(args.channels).eval()
    if args.out:
        export(module, args.out, "latents", "image")
        print(f"{args.out}: {sum(p.numel() for p in module.parameters())} parameters")
        return
    # Default init leaves the image near a constant; larger weights give a picture that depends on the latents.
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_(1.5)
        # and a last bias that centres the image in [0, 1], so that clamping hides little of it.
        centre = module(torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(1))).mean(dim=(0, 2, 3))
        module[-1].bias.add_(0.5 - centre)
    export(module, os.path.join(OUT, "taesd_decoder.onnx"), "latents", "image")
    export(DiffusersConvention(module), os.path.join(OUT, "vae_decoder", "model.onnx"), "latent_sample", "sample")

    generator = torch.Generator().manual_seed(7)
    latents = torch.randn((1, 4, 5, 6), generator=generator) * 2
    with torch.no_grad():
        image = module(latents)
    expected = {
        "generator": "scripts/make-taesd-fixture.py, torch " + torch.__version__,
        "latentShape": list(latents.shape),
        "latents": [float(v) for v in latents.flatten()],
        "imageShape": list(image.shape),
        "image": [float(v) for v in image.flatten()],
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f)
        f.write("\n")
    print(f"image range {float(image.min()):.3f} … {float(image.max()):.3f}, mean {float(image.mean()):.3f}")


if __name__ == "__main__":
    main()
