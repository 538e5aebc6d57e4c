#!/bin/bash
# Runs bench/gpu.bench on the GPU machine described in ../shared/device/README.md (no Node, no network there).
#
#   bash bench/gpu-device.sh prepare DIFFUSERS_GIT_DIR   # here: build, pack node + dist + node_modules, add the model
#                                                        # maker and diffusers' src/ (never committed: .device-carry/
#                                                        # is ignored)
#   bash bench/gpu-device.sh run                         # there, from the copied working tree (carry .device-carry):
#                                                        # builds the random-weight fp16 SD 1.5, runs the benchmark,
#                                                        # writes gpu-bench*.txt/json to $OUT
# Environment for `run`: PROVIDERS (default cuda,webgpu), LAYOUTS (default "default NHWC"), STEPS (default 10).
set -euo pipefail
root=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
cd "$root"

case "${1:-}" in
  prepare)
    diffusers_git=${2:?usage: gpu-device.sh prepare DIFFUSERS_GIT_DIR (a clone or mirror of huggingface/diffusers)}
    # tsc still emits dist/ when some file has a type error; the benchmark only needs its own files to compile.
    npm run build || echo "note: the build reported type errors; dist/ was emitted anyway"
    [ -f dist/bench/gpu.bench.js ] || { echo "dist/bench/gpu.bench.js is missing: the build failed" >&2; exit 1; }
    bash ../shared/device/pack.sh
    # pack.sh carries every production dependency, which no longer fits the 64 MiB limit (onnxruntime-web's wasm
    # files via @huggingface/transformers, sqlite3's build tree). The benchmark needs only onnxruntime-node: replace
    # the app archive with one holding dist/ and ONNX Runtime.
    tar --exclude='*/win32/*' --exclude='*/darwin/*' --exclude='*/linux/arm64/*' --exclude='*.map' -cf - \
      package.json dist node_modules/onnxruntime-node node_modules/onnxruntime-common | xz -T2 -6 > .device-carry/app.tar.xz
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
    model=/tmp/sd15-random-fp16
    [ -f "$model/unet/model.onnx" ] ||
      python3 "$carry/make_sd15_random.py" --out "$model" --diffusers-src /tmp/diffusers/src --fp16 --tokenizer-from "$carry/sd15-configs" 2>&1 | tail -5 | tee "$out/make-model.txt"
    for layout in ${LAYOUTS:-default NHWC}; do
      extra=()
      [ "$layout" = default ] || extra=(--webgpu-layout "$layout")
      node dist/bench/gpu.bench.js "$model" --providers "${PROVIDERS:-cuda,webgpu}" --steps "${STEPS:-10}" \
        --json "$out/gpu-bench-$layout.json" "${extra[@]}" 2>&1 | tee "$out/gpu-bench-$layout.txt"
    done
    ;;
  *)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
