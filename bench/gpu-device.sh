#!/bin/bash
# Runs bench/gpu.bench on the GPU machine described in ../shared/device/README.md (no Node, no network there).
#
#   bash bench/gpu-device.sh prepare DIFFUSERS_GIT_DIR   # here: build, pack node + dist + node_modules, add the model
#                                                        # maker and diffusers' src/ (never committed: .device-carry/
#                                                        # is ignored)
#   bash ../bench/gpu-device.sh run                      # there (carry .device-carry; the device command starts with
#                                                        # `source .device-carry/unpack.sh;`, which cds into .device-app):
#                                                        # builds the random-weight fp16 SD 1.5, runs the benchmark,
#                                                        # writes gpu-bench*.txt/json to $OUT
# Environment for `run`: PROVIDERS (default cuda,webgpu), CONFIGS (default
# "default default+fused+pinned default+fused default+pinned NHWC+fused+pinned": WebGPU layout, "+pinned" for pinned
# UNet shapes, "+fused" for fused attention), STEPS (default 10),
# SIZE (default 512), IMAGE_STEPS (default 30), MODEL (default: build the random fp16 SD 1.5 in /tmp/sd15-random-fp16).
set -euo pipefail
# The project root, from this file's place: on the device the working tree is a plain copy (maybe no .git), and the
# device command's `source .device-carry/unpack.sh` has already moved into .device-app/.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

case "${1:-}" in
  prepare)
    diffusers_git=${2:?usage: gpu-device.sh prepare DIFFUSERS_GIT_DIR (a clone or mirror of huggingface/diffusers)}
    # tsc still emits dist/ when some file has a type error; the benchmark only needs its own files to compile.
    npm run build || echo "note: the build reported type errors; dist/ was emitted anyway"
    [ -f dist/bench/gpu.bench.js ] || { echo "dist/bench/gpu.bench.js is missing: the build failed" >&2; exit 1; }
    bash ../shared/device/pack.sh
    # pack.sh carries every production dependency, which no longer fits the 64 MiB limit (onnxruntime-web's wasm
    # files via @huggingface/transformers, sqlite3's build tree). Replace the app archive with what the benchmark's
    # imports reach (dist/bench/gpu.bench.js -> onnxruntime-node, sharp, @huggingface/transformers): transformers'
    # Node entry bundles its tokenizers, jinja and onnxruntime-web, so only that file of it travels.
    packages=$(node -e '
      const fs = require("fs"), path = require("path");
      const seen = new Set(), queue = ["onnxruntime-node", "sharp", "@huggingface/transformers"];
      const bundledIntoTransformers = new Set(["onnxruntime-web", "@huggingface/jinja", "@huggingface/tokenizers"]);
      while (queue.length) {
        const name = queue.pop();
        const dir = path.join("node_modules", name);
        if (seen.has(name) || bundledIntoTransformers.has(name) || !fs.existsSync(dir)) continue;
        seen.add(name);
        const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
        queue.push(...Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies }));
      }
      seen.delete("@huggingface/transformers");
      console.log([...seen].map((name) => "node_modules/" + name).join("\n"));')
    transformers=node_modules/@huggingface/transformers
    # shellcheck disable=SC2086
    tar --exclude='*/win32/*' --exclude='*/darwin/*' --exclude='*/linux/arm64/*' --exclude='*.map' -cf - \
      package.json dist $packages "$transformers/package.json" "$transformers/dist/transformers.node.mjs" |
      xz -T2 -6 > .device-carry/app.tar.xz
    # The GPU machine has no way to install a missing module: check here that the packed app runs the benchmark
    # (tiny model, CPU, 64x64), as the device will run it.
    smoke=$(mktemp -d)
    tar xJf .device-carry/app.tar.xz -C "$smoke"
    (cd "$smoke" && node dist/bench/gpu.bench.js "$root/test/fixtures/tiny-sd" --providers cpu --size 64 --steps 2 \
      --image-steps 2 > smoke.txt 2>&1) || { cat "$smoke/smoke.txt" >&2; echo "the packed app failed its smoke test" >&2; exit 1; }
    grep -q 'pipeline, [0-9]*-step image' "$smoke/smoke.txt" || { cat "$smoke/smoke.txt" >&2; echo "the packed app's smoke test made no image" >&2; exit 1; }
    rm -rf "$smoke"
    echo "smoke test: the packed app ran the benchmark on the tiny model"
    cp ../shared/device/make_sd15_random.py .device-carry/
    # The random model has no tokenizer or scheduler config of its own: the tiny model's are SD 1.5's.
    mkdir -p .device-carry/sd15-configs && cp -r test/fixtures/tiny-sd/tokenizer test/fixtures/tiny-sd/scheduler .device-carry/sd15-configs/
    git --git-dir="$diffusers_git" archive HEAD src | gzip -6 > .device-carry/diffusers-src.tar.gz
    du -sh .device-carry
    ;;
  run)
    out=${OUT:?OUT must name the folder whose files come back}
    # shellcheck disable=SC1091
    source .device-carry/unpack.sh # puts node on PATH, unpacks into .device-app and cds there
    carry=../.device-carry
    mkdir -p /tmp/diffusers && tar xzf "$carry/diffusers-src.tar.gz" -C /tmp/diffusers
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1 || true
    model=${MODEL:-/tmp/sd15-random-fp16}
    [ -f "$model/unet/model.onnx" ] ||
      python3 "$carry/make_sd15_random.py" --out "$model" --diffusers-src /tmp/diffusers/src --fp16 --tokenizer-from "$carry/sd15-configs" 2>&1 | tail -5 | tee "$out/make-model.txt"
    # Each configuration is a WebGPU layout (default or NHWC) with optional "+pinned" (UNet input shapes pinned,
    # pin-shapes.ts) and "+fused" (attention as MultiHeadAttention, fuse-attention.ts). The most telling ones first:
    # files written so far come back even if the device's time limit cuts the run short.
    for config in ${CONFIGS:-default default+fused+pinned default+fused default+pinned NHWC+fused+pinned}; do
      layout=${config%%+*}
      extra=()
      [ "$layout" = default ] || extra+=(--webgpu-layout "$layout")
      case "$config" in *+pinned*) extra+=(--pin-shapes) ;; esac
      case "$config" in *+fused*) extra+=(--fuse-attention) ;; esac
      node dist/bench/gpu.bench.js "$model" --providers "${PROVIDERS:-cuda,webgpu}" --steps "${STEPS:-10}" \
        --size "${SIZE:-512}" --image-steps "${IMAGE_STEPS:-30}" --json "$out/gpu-bench-$config.json" "${extra[@]}" 2>&1 |
        tee "$out/gpu-bench-$config.txt"
    done
    ;;
  *)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
