#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for medr1 and builds it.
#   - installs the Debian packages (needs root or sudo): toolchain, gloo headers, image/text libraries, GoogleTest,
#     qemu-user (the tests' emulated AVX2-only CPU);
#   - makes the project-local virtual environment .venv with the pinned scripts/requirements.txt: the PyTorch
#     2.12.1 wheel (its LibTorch, CUDA 13.0 build, is the CMake prefix of every build) and Hugging Face's
#     `tokenizers` (the differential tokenizer test's reference). Never a system-wide pip install;
#   - makes .venv-peer (scripts/requirements-peer.txt: transformers 4.49 + peft 0.14 over .venv's torch), the
#     reference of the LoRA adapter test;
#   - unpacks the vendored tokenizer fixtures (scripts/tokenizer_fixtures.sh);
#   - configures and builds (Release, Ninja, ccache);
#   - warm-starts the bundled demo checkpoint models/demo-tiny (once).
# Env: MEDR1_BUILD_DIR (default build), MEDR1_CUDA=ON for the CUDA variant (links the wheel's CUDA LibTorch,
#      NCCL; run it with MEDR1_BUILD_DIR=build-cuda beside the CPU build), MEDR1_WERROR=ON for CI,
#      MEDR1_JOBS (default nproc), MEDR1_VENV (default .venv), MEDR1_SKIP_DEMO=1 skips the demo warm start,
#      MEDR1_BUILD_BENCH=OFF leaves the benchmarks out.
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$(date +%s)
stage() { echo "[setup] $1 ($(($(date +%s) - t_start)) s)"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# ---- Debian packages ---------------------------------------------------------------------------------------
PKGS=(build-essential cmake ninja-build pkg-config ccache git xz-utils iproute2 qemu-user
      libgloo-dev libstb-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libgtest-dev libbenchmark-dev
      libpcre2-dev libutf8proc-dev libjpeg62-turbo-dev libpng-dev libcurl4-openssl-dev libssl-dev
      clang-14 libclang-rt-14-dev)  # the last two: libFuzzer + ASan/UBSan runtimes (scripts/fuzz.sh)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3 with venv + ensurepip (Debian splits them into python3-venv; a pyenv python has them).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3 python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
stage "Debian packages ready"

# ---- Python virtual environment (pinned) -----------------------------------------------------------------------
VENV="${MEDR1_VENV:-.venv}"
REQ=scripts/requirements.txt
stamp="$VENV/.medr1-requirements.md5"
want_md5=$(md5sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want_md5" ]; then
  echo "[setup] virtual environment $VENV from $REQ"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  echo "$want_md5" > "$stamp"
fi
PY="$VENV/bin/python"
# The peer environment: transformers 4.49 + peft 0.14 (scripts/requirements-peer.txt) over .venv's torch.
PEER="${MEDR1_PEER_VENV:-.venv-peer}"
PREQ=scripts/requirements-peer.txt
peer_stamp="$PEER/.medr1-requirements.md5"
peer_md5=$(cat "$REQ" "$PREQ" | md5sum | cut -d' ' -f1)
if [ ! -x "$PEER/bin/python" ] || [ "$(cat "$peer_stamp" 2>/dev/null)" != "$peer_md5" ]; then
  echo "[setup] peer environment $PEER from $PREQ"
  rm -rf "$PEER"
  python3 -m venv "$PEER"
  main_site=$("$PY" -c 'import site; print(site.getsitepackages()[0])')
  peer_site=$("$PEER/bin/python" -c 'import site; print(site.getsitepackages()[0])')
  echo "$(cd "$main_site" && pwd)" > "$peer_site/zz-medr1-main-venv.pth"
  "$PEER/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$PREQ"
  "$PEER/bin/python" -c 'import transformers, peft, torch' || { echo "[setup] $PEER: transformers / peft do not import" >&2; exit 1; }
  echo "$peer_md5" > "$peer_stamp"
fi
TORCH_PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
stage "virtual environment ready: torch $("$PY" -c 'import torch; print(torch.__version__)') at $TORCH_PREFIX"

MEDR1_PYTHON="$PY" bash scripts/tokenizer_fixtures.sh

# ---- build ---------------------------------------------------------------------------------------------------
BUILD="${MEDR1_BUILD_DIR:-build}"
CUDA="${MEDR1_CUDA:-OFF}"
cuda_args=()
if [ "$CUDA" = ON ]; then
  command -v nvcc >/dev/null 2>&1 || { echo "[setup] MEDR1_CUDA=ON needs the CUDA toolkit (nvcc) on PATH" >&2; exit 1; }
fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDR1_WERROR="${MEDR1_WERROR:-OFF}" \
  -DMEDR1_CUDA="$CUDA" -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DMEDR1_PYTHON="$(pwd)/$PY" \
  -DMEDR1_BUILD_BENCH="${MEDR1_BUILD_BENCH:-ON}" "${cuda_args[@]}"
stage "configured $BUILD (MEDR1_CUDA=$CUDA)"
cmake --build "$BUILD" -j "${MEDR1_JOBS:-$(nproc)}"
stage "built into $BUILD"

# ---- demo checkpoint -----------------------------------------------------------------------------------------
# The demo's warm-started tiny model (README's first command trains it with GRPO): the Qwen2-VL layout at
# hidden size 64 (configs/models/demo-tiny) plus the real Qwen2-VL tokenizer, initialised from the seed and
# SFT-warm-started on data/demo by medr1-train (configs/train/demo_sft.json: lr 1e-3 constant, 200 steps of
# 4 prompts, deterministic, ~2 minutes on 2 idle CPU cores). Measured on the SFT curve: the answer format
# is learned by step ~140, the image -> letter mapping between steps 140 and 200 (greedy accuracy on
# test_easy 0.40 -> 0.80; lr 3e-3 and above plateaus at ~0.4). At step 200 sampling at temperature 1 is
# still diffuse (accuracy reward ~0.5, format ~0.7-0.9), which is what the GRPO demo then sharpens.
if [ "${MEDR1_SKIP_DEMO:-0}" != 1 ] && [ ! -f models/demo-tiny/model.safetensors ]; then
  mkdir -p models/demo-tiny-init
  cp configs/models/demo-tiny/*.json models/demo-tiny-init/
  cp tests/data/tokenizer/qwen2vl/tokenizer.json models/demo-tiny-init/
  "$BUILD/medr1-train" --config configs/train/demo_sft.json
  stage "demo model warm-started into models/demo-tiny"
fi
stage "done"
