#!/usr/bin/env bash
# One prepared GPU check (issue: DDP / NCCL). Runs on a GPU machine that has CUDA, cmake and a
# PyTorch 2.x wheel but no apt: the Debian packages medr1 needs are carried in as .deb files
# (made here with `bash scripts/gpu_check.sh --download-debs DIR`) and unpacked with dpkg -x into a
# private prefix — never into /.
#   On the GPU machine: bash scripts/gpu_check.sh --debs DIR
# Steps: build against the wheel's LibTorch (-DMEDR1_CUDA=ON), run the CPU unit tests there, the
# parity sets, the gloo dist tests, a 1-GPU training step (medr1-train --device cuda: GRPO in bf16 with
# gradient checkpointing, then SFT), a data-parallel NCCL run when there are >= 2 GPUs, and a bf16
# inference run on CUDA.
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
ctest --test-dir build-gpu -L dist --output-on-failure || echo "[gpu_check] dist tests failed"
# Training on the GPU (medr1-train --device cuda): the tiny checkpoint + its tokenizer in a scratch folder,
# 2 optimizer steps of 2 micro-batches each. One process on one GPU is a world of 1 (cuda:0; no process
# group is made, collectives are no-ops, as in torch without init_process_group); under torchrun-style
# ranks (--nproc-per-node N) "--device cuda" puts rank r on cuda:LOCAL_RANK and uses the NCCL backend.
TINY="$(mktemp -d)/model"
mkdir -p "$TINY"
for f in config.json model.safetensors preprocessor_config.json generation_config.json tokenizer_config.json \
         chat_template.json; do cp "tests/data/qwen2vl-tiny/$f" "$TINY/"; done
cp tests/data/tokenizer/qwen2vl/tokenizer.json "$TINY/"
chmod u+w "$TINY"/*
TRAIN_ARGS=(--model_name_or_path "$TINY" --dataset_name data/demo/train_easy.json --dataset_root data/demo
            --prompt_template nothink --max_steps 2 --save_steps 1000 --per_device_train_batch_size 1
            --gradient_accumulation_steps 2 --num_generations 2 --max_completion_length 8 --max_pixels 3136
            --min_pixels 3136 --learning_rate 1e-3 --logging_steps 1 --device cuda)
./build-gpu/medr1-train "${TRAIN_ARGS[@]}" --algo grpo --bf16 --gradient_checkpointing \
  --output_dir /tmp/medr1-gpu-train-grpo && tail -n 2 /tmp/medr1-gpu-train-grpo/metrics.jsonl \
  || echo "[gpu_check] 1-GPU GRPO training step (bf16, gradient checkpointing) failed"
./build-gpu/medr1-train "${TRAIN_ARGS[@]}" --algo sft --output_dir /tmp/medr1-gpu-train-sft \
  && tail -n 2 /tmp/medr1-gpu-train-sft/metrics.jsonl || echo "[gpu_check] 1-GPU SFT training step failed"
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)
if [ "$NGPU" -ge 2 ]; then
  ./build-gpu/medr1-train --nproc-per-node 2 --master-port 29533 "${TRAIN_ARGS[@]}" --algo sft \
    --output_dir /tmp/medr1-gpu-train-nccl && tail -n 2 /tmp/medr1-gpu-train-nccl/metrics.jsonl \
    || echo "[gpu_check] 2-GPU NCCL training run failed"
else
  echo "[gpu_check] $NGPU GPU(s): skipping the 2-rank NCCL training run (NCCL refuses two ranks on one GPU)"
fi
./build-gpu/medr1-infer --model tests/data/qwen2vl-tiny --tokenizer tests/data/tokenizer/qwen2vl \
  --input data/demo/test.json --dataset-root data/demo --output /tmp/medr1-gpu-infer.jsonl \
  --device cuda --dtype bf16 --max-new-tokens 16 || echo "[gpu_check] GPU inference failed"
echo "[gpu_check] done"
