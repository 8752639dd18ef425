#!/usr/bin/env bash
# Download a model from the Hugging Face Hub (Med-R1's download_model.sh): a thin wrapper over build/medr1-download.
#   bash scripts/download_model.sh --model qwen2-vl-2b [--output checkpoints/Qwen2-VL-2B-Instruct] [--token hf_...]
#   bash scripts/download_model.sh --list
# MEDR1_BUILD_DIR picks another build folder (default build/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exe="${root}/${MEDR1_BUILD_DIR:-build}/medr1-download"
if [ ! -x "$exe" ]; then
  echo "download_model.sh: $exe not found; build it first (bash scripts/setup.sh, or ninja -C build medr1-download)" >&2
  exit 1
fi
exec "$exe" "$@"
