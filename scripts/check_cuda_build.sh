#!/usr/bin/env bash
# Checks a CUDA build (MEDR1_CUDA=ON MEDR1_BUILD_DIR=DIR bash scripts/setup.sh) on a machine with or without a GPU:
#   - medr1-train links LibTorch's CUDA libraries and NCCL (ldd);
#   - every app starts (--help exits 0);
#   - without a visible GPU, --device cuda exits non-zero with the "no CUDA device is visible" message
#     (medr1-train and medr1-infer); with one, that check is skipped.
# Usage: bash scripts/check_cuda_build.sh [BUILD_DIR (default build-cuda)]
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-cuda}"
fail=0
[ -x "$B/medr1-train" ] || { echo "[cuda-check] $B/medr1-train not built" >&2; exit 1; }

echo "[cuda-check] ldd $B/medr1-train (torch, CUDA, NCCL libraries):"
# ldd runs once into a variable: under pipefail, `ldd | grep -q` fails at random when grep exits at its first
# match while ldd is still writing (SIGPIPE, status 141), which made the check report a library that ldd listed.
deps=$(ldd "$B/medr1-train")
grep -E 'torch|c10|cuda|cublas|cudnn|nccl|nvrtc|nvshmem' <<< "$deps" | sed 's/ (0x[0-9a-f]*)//; s/^/  /'
for lib in libtorch_cuda.so libc10_cuda.so libcudart.so libnccl.so libcublas.so; do
  if ! grep -q "$lib" <<< "$deps"; then
    echo "[cuda-check] FAILED: medr1-train does not load $lib" >&2
    fail=1
  fi
done
if grep -q 'not found' <<< "$deps"; then
  echo "[cuda-check] FAILED: unresolved libraries:" >&2
  grep 'not found' <<< "$deps" >&2
  fail=1
fi

for exe in "$B"/medr1-*; do
  [ -x "$exe" ] && [ -f "$exe" ] || continue
  if "$exe" --help > /dev/null 2>&1; then
    echo "[cuda-check] $(basename "$exe") --help: ok"
  else
    echo "[cuda-check] FAILED: $(basename "$exe") --help exited non-zero" >&2
    fail=1
  fi
done

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${gpus:-0}" -gt 0 ]; then
  echo "[cuda-check] $gpus GPU(s) visible: skipping the no-GPU --device cuda checks"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  check_refused() {  # name, command...
    local name=$1
    shift
    set +e
    "$@" > "$tmp/out" 2>&1
    local rc=$?
    set -e
    if [ "$rc" -ne 0 ] && grep -q "no CUDA device is visible" "$tmp/out"; then
      echo "[cuda-check] $name --device cuda without a GPU: exit $rc, '$(grep -m1 -o 'no CUDA device is visible[^;]*' "$tmp/out")'"
    else
      echo "[cuda-check] FAILED: $name --device cuda without a GPU: exit $rc, output:" >&2
      tail -5 "$tmp/out" >&2
      fail=1
    fi
  }
  check_refused medr1-train "$B/medr1-train" --config configs/train/demo.json --device cuda --max_steps 1 \
    --output_dir "$tmp/train"
  check_refused medr1-infer "$B/medr1-infer" --model tests/data/qwen2vl-tiny --tokenizer tests/data/tokenizer/qwen2vl \
    --input data/demo/test_easy.json --dataset-root data/demo --output "$tmp/infer.jsonl" --device cuda
fi
[ "$fail" = 0 ] && echo "[cuda-check] all checks passed" || { echo "[cuda-check] FAILED" >&2; exit 1; }
