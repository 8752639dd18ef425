#!/usr/bin/env bash
# medr1-bench-generate next to tests/bench/peer/hf_generate.py (transformers 4.49) on the same shapes, one after the
# other in one sitting, for each batch size; prints prefill and decode tokens/s, the ratio medr1 / transformers, and
# medr1's fractions of the ceilings it measured in the same run. A benchmark, not a test.
#   tests/bench/peer/generate_side_by_side.sh [DTYPE=bf16|fp32] [BATCHES="1 4 8 16"] [LAYERS=4] [VDEPTH=4] [NEW=8]
#     [THREADS=2] [ATTN=eager]
set -euo pipefail
cd "$(dirname "$0")/../../.."
DTYPE="${DTYPE:-bf16}"; BATCHES="${BATCHES:-1 4 8 16}"; LAYERS="${LAYERS:-4}"; VDEPTH="${VDEPTH:-4}"
NEW="${NEW:-8}"; THREADS="${THREADS:-2}"; ATTN="${ATTN:-eager}"
BENCH="${MEDR1_BUILD_DIR:-build}/tests/bench/medr1-bench-generate"
PEER_PY="${MEDR1_PEER_PYTHON:-.venv-peer/bin/python}"
[ -x "$BENCH" ] || { echo "missing $BENCH (ninja -C build medr1-bench-generate)" >&2; exit 1; }
[ -x "$PEER_PY" ] || { echo "missing $PEER_PY (scripts/setup.sh makes .venv-peer)" >&2; exit 1; }
common=(--layers "$LAYERS" --vision-depth "$VDEPTH" --new-tokens "$NEW" --threads "$THREADS" --dtype "$DTYPE")
printf '%s %s, %s layers + %s vision blocks, %s new tokens, %s threads; attention %s (both sides)\n' \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" "$DTYPE" "$LAYERS" "$VDEPTH" "$NEW" "$THREADS" "$ATTN"
printf '%5s | %12s %12s %7s | %12s %12s %7s | %9s %9s\n' batch "prefill m1" "prefill hf" ratio "decode m1" \
  "decode hf" ratio "pf/peak" "dec/bound"
for b in $BATCHES; do
  rc=0; ours=$("$BENCH" "${common[@]}" --batch "$b" --attn-implementation "$ATTN" 2>/dev/null | tail -1) || rc=$?
  prc=0; peer=$("$PEER_PY" tests/bench/peer/hf_generate.py "${common[@]}" --batch "$b" --attn "$ATTN" 2>/dev/null | tail -1) || prc=$?
  # A side that failed (e.g. killed for memory: exit 137) is printed as such, and the other side still is.
  OURS="$ours" PEER="$peer" RC="$rc" PRC="$prc" "$PEER_PY" - "$b" <<'PY'
import json, os, sys
def load(k, rc):
    try:
        return json.loads(os.environ[k])
    except ValueError:
        return {"failed": "exit %s" % os.environ[rc]}
o, p = load("OURS", "RC"), load("PEER", "PRC")
def f(d, k):
    return "%12.2f" % d[k] if k in d else "%12s" % d["failed"]
def r(k):
    return "%6.2fx" % (o[k] / p[k]) if k in o and k in p else "%7s" % "-"
if "prompt_tokens" in o and "prompt_tokens" in p:
    assert o["prompt_tokens"] == p["prompt_tokens"], (o["prompt_tokens"], p["prompt_tokens"])
print("%5s | %s %s %s | %s %s %s | %9s %9s" % (
    sys.argv[1], f(o, "prefill_tok_s"), f(p, "prefill_tok_s"), r("prefill_tok_s"), f(o, "decode_tok_s"),
    f(p, "decode_tok_s"), r("decode_tok_s"), "%.2f" % o["prefill_vs_matmul"] if "failed" not in o else "-",
    "%.2f" % o["decode_vs_bound"] if "failed" not in o else "-"))
PY
done
