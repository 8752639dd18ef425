#!/usr/bin/env bash
# Coverage-guided fuzzing of medr1's parsers with libFuzzer under ASan + UBSan (tests/fuzz, one target per parser).
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]   one target, e.g. scripts/fuzz.sh image 300
#   scripts/fuzz.sh all SECONDS                           every target in turn, SECONDS each (CI: all 30)
#   scripts/fuzz.sh list                                  the target names
# Builds the clang build folder if missing (MEDR1_FUZZ_BUILD_DIR, default build-fuzz: clang-14, MEDR1_FUZZ=ON,
# MEDR1_SANITIZE=address;undefined, no tests / benches), then builds the target(s) there. Each run starts from a
# scratch copy of the seed corpus tests/fuzz/corpus/<target> (in <build>/fuzz-work/<target>/corpus, so the repo's
# corpus stays small) and leaves crashing inputs in <build>/fuzz-work/<target>/artifacts. Prints executions and
# crashes per target; exits non-zero when a target crashed (ASan / UBSan report, uncaught exception, timeout of
# one input above 20 s, a single allocation above 2 GiB or RSS above 3 GiB).
# Env: MEDR1_PYTHON (default .venv/bin/python: its torch is the LibTorch), MEDR1_BUILD_LOCK (a flock file that
#      serialises builds of a shared tree; default none).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD="${MEDR1_FUZZ_BUILD_DIR:-build-fuzz}"
PY="${MEDR1_PYTHON:-$ROOT/.venv/bin/python}"
CORPUS_ROOT="$ROOT/tests/fuzz/corpus"

targets() { for f in "$ROOT"/tests/fuzz/fuzz_*.cpp; do basename "$f" .cpp | sed 's/^fuzz_//'; done; }

usage() { echo "usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...]; targets: $(targets | tr '\n' ' ')" >&2; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = list ]; then targets; exit 0; fi
[ $# -ge 2 ] || usage
WHAT="$1"; SECONDS_EACH="$2"; shift 2
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$SECONDS_EACH'" >&2; exit 2; }
if [ "$WHAT" = all ]; then
  mapfile -t LIST < <(targets)
else
  [ -f "$ROOT/tests/fuzz/fuzz_$WHAT.cpp" ] || { echo "fuzz.sh: no target '$WHAT' (tests/fuzz/fuzz_$WHAT.cpp)" >&2; usage; }
  LIST=("$WHAT")
fi

locked() { if [ -n "${MEDR1_BUILD_LOCK:-}" ]; then flock "$MEDR1_BUILD_LOCK" "$@"; else "$@"; fi; }

if [ ! -f "$BUILD/build.ninja" ]; then
  command -v clang++-14 >/dev/null || { echo "fuzz.sh: needs clang++-14 and libclang-rt-14-dev (scripts/setup.sh)" >&2; exit 1; }
  TORCH_PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  echo "[fuzz] configuring $BUILD (clang-14, ASan + UBSan, libFuzzer)"
  CC=clang-14 CXX=clang++-14 locked cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEDR1_FUZZ=ON \
    -DMEDR1_SANITIZE="address;undefined" -DMEDR1_BUILD_TESTS=OFF -DMEDR1_BUILD_BENCH=OFF \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DMEDR1_PYTHON="$PY"
fi
ninja_targets=()
for t in "${LIST[@]}"; do ninja_targets+=("fuzz_$t"); done
echo "[fuzz] building ${ninja_targets[*]}"
locked ninja -C "$BUILD" "${ninja_targets[@]}"

# Sanitizers: every UBSan report stops the run (a finding); LibTorch's globals are not instrumented, so ODR checks
# are off; leaks are findings.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0:detect_leaks=1:allocator_may_return_null=0:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

declare -A EXECS CRASHES
failed=0
for t in "${LIST[@]}"; do
  work="$BUILD/fuzz-work/$t"
  rm -rf "$work/corpus" "$work/artifacts"  # artifacts of an earlier run are gone: copy them out to keep them
  mkdir -p "$work/corpus" "$work/artifacts"
  [ -d "$CORPUS_ROOT/$t" ] && cp "$CORPUS_ROOT/$t"/* "$work/corpus/"
  log="$work/fuzz.log"
  echo "[fuzz] $t: $SECONDS_EACH s (log $log, crashing inputs in $work/artifacts)"
  rc=0
  "$BUILD/fuzz_$t" "$work/corpus" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=3072 \
    -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@" >"$log" 2>&1 || rc=$?
  execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  [ -n "$execs" ] || execs=$(grep -ao '#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
  n_art=$(find "$work/artifacts" -type f | wc -l)
  EXECS[$t]="${execs:-0}"
  CRASHES[$t]="$n_art"
  if [ "$rc" != 0 ]; then
    failed=1
    echo "[fuzz] $t: FAILED (exit $rc) after ${execs:-?} executions; the report:" >&2
    grep -aE 'ERROR: |SUMMARY: |runtime error|Test unit written|==[0-9]+== ' "$log" | head -20 >&2 || true
  else
    echo "[fuzz] $t: ${execs:-?} executions, no crash"
  fi
done

echo "[fuzz] summary ($SECONDS_EACH s each):"
printf '  %-22s %12s %8s\n' target executions crashes
for t in "${LIST[@]}"; do printf '  %-22s %12s %8s\n' "$t" "${EXECS[$t]}" "${CRASHES[$t]}"; done
exit $failed
