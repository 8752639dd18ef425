#!/usr/bin/env bash
# One prepared GPU check (issue: DDP / NCCL). Runs on a GPU machine that has CUDA, cmake and a
# PyTorch 2.x wheel but no apt: the Debian packages medr1 needs are carried in as .deb files
# (made here with `bash scripts/gpu_check.sh --download-debs DIR`) and unpacked with dpkg -x into a
# private prefix — never into /.
#   On the GPU machine: bash scripts/gpu_check.sh --debs DIR
# Steps: build against the wheel's LibTorch (-DMEDR1_CUDA=ON), run the CPU unit tests there, the
# parity sets, the gloo dist tests and a bf16 inference run on CUDA (the NCCL training step needs
# medr1-train --device, not there yet).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PKGS=(libstb-dev libstb0 nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
      libgtest-dev libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libjpeg62-turbo-dev
      libjpeg62-turbo libpng-dev libpng16-16 zlib1g-dev)

if [ "${1:-}" = "--download-debs" ]; then
  out="${2:?usage: --download-debs DIR}"; mkdir -p "$out"
  (cd "$out" && apt-get download "${PKGS[@]}")
  echo "[gpu_check] .debs in $out: carry them to the GPU machine"; exit 0
fi
[ "${1:-}" = "--debs" ] || { echo "usage: $0 --download-debs DIR | --debs DIR" >&2; exit 2; }
DEBS="${2:?}"
PREFIX="${MEDR1_DEPS_PREFIX:-$ROOT/.gpu-deps}"
mkdir -p "$PREFIX"
for d in "$DEBS"/*.deb; do dpkg -x "$d" "$PREFIX"; done
export PKG_CONFIG_PATH="$PREFIX/usr/lib/x86_64-linux-gnu/pkgconfig:$PREFIX/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}"
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
nvidia-smi --query-gpu=name,memory.total --format=csv || true
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMEDR1_CUDA=ON -DMEDR1_BUILD_BENCH=ON \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$PREFIX/usr/lib/x86_64-linux-gnu/cmake" \
  -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include" -DCMAKE_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu"
cmake --build build-gpu -j "$(nproc)"
ctest --test-dir build-gpu -L "unit|parity" --output-on-failure -j 8 || echo "[gpu_check] CPU tests failed"
for set in tests/data/qwen2vl-tiny tests/data/qwen2_5vl-tiny; do
  ./build-gpu/medr1-parity --set "$set" || echo "[gpu_check] parity failed: $set"
done
# 1-GPU NCCL training step: NOT YET POSSIBLE — medr1-train has no --device option yet (the trainer runs on CPU
# with gloo; ProcessGroup already builds NCCL under MEDR1_CUDA). Until then, run the 2-rank gloo tests here.
ctest --test-dir build-gpu -L dist --output-on-failure || echo "[gpu_check] dist tests failed"
./build-gpu/medr1-infer --model tests/data/qwen2vl-tiny --tokenizer tests/data/tokenizer/qwen2vl \
  --input data/demo/test.json --dataset-root data/demo --output /tmp/medr1-gpu-infer.jsonl \
  --device cuda --dtype bf16 --max-new-tokens 16 || echo "[gpu_check] GPU inference failed"
echo "[gpu_check] done"
