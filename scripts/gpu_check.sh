#!/usr/bin/env bash
# The ONE prepared GPU check of medr1: one device run (one H200, 16 cores), under 10 minutes, every step reported.
#
# Why it builds medr1 there: the binaries built here link the LibTorch of the pinned wheel (torch 2.12.1+cu130 in
# .venv), but the GPU machine's python3 (/opt/torch/.venv/bin/python3) has torch 2.11.0+cu130, and LibTorch has no
# ABI across versions, so binaries made here cannot run against it; the 2.12.1 wheel's own libraries (~4 GB:
# libtorch_cuda, cuDNN, cuBLAS, NCCL) cannot travel either (64 MiB per call). So this script builds medr1 there,
# -DMEDR1_CUDA=ON, against that machine's torch (python3 -c 'import torch; print(torch.utils.cmake_prefix_path)').
# That machine has nvcc 13.0, cmake, ninja, g++ and python3, but no apt and no network: the Debian 12 packages
# cmake/medr1_deps.cmake needs (and the gloo headers that torch's ProcessGroupGloo.hpp includes: libgloo-dev)
# travel as .deb files (19 packages, 4.7 MB: PKGS below; no GoogleTest, the check builds no tests) and are unpacked
# with dpkg -x (or python's tarfile where there is no dpkg) into a private prefix under the build folder, never into /.
#
#   Here (Debian 12, network):  bash scripts/gpu_check.sh --download-debs build-gpu-debs
#     (build*/ is gitignored, so the folder travels only as a carried path; it also prints what would travel)
#   The device call, one `run` of the device tool:
#     command:   bash scripts/gpu_check.sh --debs build-gpu-debs
#     timeout_s: 600     (the script keeps to MEDR1_GPU_CHECK_BUDGET_S=560 s and writes its summary as it goes)
#     carry:     ["build-gpu-debs"]
#   What travels must be <= 64 MiB (tracked + untracked-not-ignored files + carried paths; `--download-debs` prints
#   the total): the .venv made by scripts/setup.sh must be gitignored, and the tracked test data alone is ~88 MiB:
#   the two parity sets together (tests/data/qwen2vl-tiny 48 MiB, qwen2_5vl-tiny 25 MiB) are over the limit by
#   themselves, tests/data/images-real is 13 MiB. A set whose model.safetensors or goldens.safetensors is absent from
#   the working tree is reported SKIPPED; the training steps need neither set (demo-tiny config, seeded init; the
#   warm-started models/demo-tiny, 38 MiB, is used when present).
#   A rerun on a still-warm machine reuses build-gpu/ (ignored build outputs stay there), so it builds incrementally.
#   Dry run without a GPU (configure only):
#     bash scripts/gpu_check.sh --debs DIR --configure-only --python .venv/bin/python
#
# Steps (each prints `[gpu_check] <step>: ok|FAILED|SKIPPED <figures>`; a failing step does not stop the others):
#   env, deps, tokenizer, configure, build (medr1-parity, medr1-train, medr1-infer, medr1-bench-generate; no tests)
#   parity-cpu-<set>         medr1-parity fp32 on the CPU against the transformers goldens (the set's pass marks)
#   parity-cuda-fp32-<set>   the same on CUDA (same goldens, same pass marks: CUDA agrees with the CPU within them)
#   parity-bf16-<set>        bf16 on the CPU and on CUDA: in bf16 the float errors are reported without pass marks,
#                            so CUDA's error of every float check of the forward cases must be <= 2 x the CPU's + 1e-3
#                            (exact checks must pass); generate cases are listed only (greedy ids may diverge in bf16)
#   grpo-demo                medr1-train GRPO bf16 + gradient checkpointing on CUDA, demo-tiny model, 2 steps, G=4
#   sft-demo                 SFT on CUDA, 2 steps
#   infer-demo               medr1-infer bf16 on CUDA on the GRPO-trained demo model (data/demo/test_easy.json)
#   grpo-2b                  GRPO bf16 + gradient checkpointing on a Qwen2-VL-2B-shaped model (28 layers, 32 vision
#                            blocks, hidden 1536; random weights from the seed: a config-only folder), 2 steps, G=4
#   decode-2b                medr1-bench-generate --device cuda: prefill / decode tokens/s, 2B shape, bf16
#   nccl-2gpu                2-rank NCCL SFT run (only with >= 2 GPUs)
# Peak GPU memory per step: nvidia-smi memory.used sampled every ~0.25 s in the background.
# Results: "$OUT" (the device tool's folder; else <build>/gpu_check): gpu_check_summary.txt (the step lines),
# gpu_check_steps.log (every step's output), gpu_check_build.log, gpu_check_mem.csv.
# Env: MEDR1_GPU_CHECK_BUDGET_S (560), MEDR1_GPU_BUILD_DIR (build-gpu), MEDR1_GPU_JOBS (nproc).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
T_START=$(date +%s)
PKGS=(nlohmann-json3-dev libcli11-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libgloo-dev libstb-dev
      libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libjpeg62-turbo-dev libjpeg62-turbo
      libpng-dev libpng16-16 zlib1g-dev pkgconf-bin libpkgconf3)
LIMIT_BYTES=$((64 * 1024 * 1024))

# Bytes that a device call would send: tracked + untracked-not-ignored files that exist, plus the carried paths.
travel_bytes() {
  local t c=0 p
  t=$(git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
    awk '{s += $1} END {printf "%.0f\n", s}')
  for p in "$@"; do c=$((c + $(du -sb "$p" | cut -f1))); done
  echo $((t + c))
}

if [ "${1:-}" = "--download-debs" ]; then
  out="${2:?usage: $0 --download-debs DIR}"
  mkdir -p "$out"
  (cd "$out" && apt-get download "${PKGS[@]}") || { echo "[gpu_check] apt-get download failed" >&2; exit 1; }
  for p in "${PKGS[@]}"; do
    ls "$out/${p}_"*.deb >/dev/null 2>&1 || { echo "[gpu_check] no .deb for $p in $out" >&2; exit 1; }
  done
  debs=$(du -cb "$out"/*.deb | tail -1 | cut -f1)
  total=$(travel_bytes "$out")
  echo "[gpu_check] ${#PKGS[@]} .debs in $out: $((debs / 1024)) KiB"
  echo "[gpu_check] a device call would send $((total / 1048576)) MiB of at most 64 (working tree + $out)"
  if [ "$total" -gt "$LIMIT_BYTES" ]; then
    echo "[gpu_check] OVER the 64 MiB limit; largest contributors:" >&2
    git ls-files -z -co --exclude-standard | xargs -0 -r du -b 2>/dev/null | sort -rn | head -8 >&2
    exit 3
  fi
  exit 0
fi

if [ "${1:-}" != "--debs" ] || [ -z "${2:-}" ]; then
  echo "usage: $0 --download-debs DIR | --debs DIR [--configure-only] [--python PY]" >&2
  exit 2
fi
DEBS=$(cd "$2" && pwd)
shift 2
CONFIGURE_ONLY=0
PY=python3
while [ $# -gt 0 ]; do
  case "$1" in
    --configure-only) CONFIGURE_ONLY=1 ;;
    --python) PY="${2:?}"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
BUDGET=${MEDR1_GPU_CHECK_BUDGET_S:-560}
BUILD="${MEDR1_GPU_BUILD_DIR:-$ROOT/build-gpu}"
JOBS="${MEDR1_GPU_JOBS:-$(nproc)}"
PREFIX="$BUILD/deps"
RES="${OUT:-$BUILD/gpu_check}"
WORK="$BUILD/work"
mkdir -p "$RES" "$WORK" "$PREFIX"
SUMMARY="$RES/gpu_check_summary.txt"
STEPLOG="$RES/gpu_check_steps.log"
BUILDLOG="$RES/gpu_check_build.log"
MEMCSV="$RES/gpu_check_mem.csv"
: > "$SUMMARY"
: > "$STEPLOG"

# ---- helpers -------------------------------------------------------------------------------------------------
left() { echo $((BUDGET - ($(date +%s) - T_START))); }
# tmo SECONDS CMD...: runs CMD under `timeout`, capped to the time left in the budget (15 s kept for the summary).
tmo() {
  local want=$1 l
  shift
  l=$(($(left) - 15))
  [ "$want" -gt "$l" ] && want=$l
  if [ "$want" -lt 5 ]; then
    echo "[gpu_check] no time left in the ${BUDGET} s budget for: $*"
    return 124
  fi
  timeout -k 5 "$want" "$@"
}
STEP=""
STEP_T0=0
begin() {
  STEP=$1
  STEP_T0=$(date +%s)
  printf '\n===== %s (t=%ss) =====\n' "$STEP" "$((STEP_T0 - T_START))" >> "$STEPLOG"
}
# peak memory.used (MiB) sampled during the current step
peak_mib() {
  [ -s "$MEMCSV" ] || { echo "n/a"; return; }
  awk -F, -v a="$STEP_T0" -v b="$(date +%s)" '$1 >= a && $1 <= b && $2 ~ /^[0-9]+$/ && $2 + 0 > m {m = $2 + 0}
    END {if (m == "") print "n/a"; else print m}' "$MEMCSV"
}
# finish STATUS FIGURES...: the step's one line, on stdout and in the summary
finish() {
  local status=$1 dt line
  shift
  dt=$(($(date +%s) - STEP_T0))
  line="[gpu_check] $STEP: $status $* (${dt} s"
  case "$STEP" in
    env | deps | tokenizer | configure | build) ;;
    *) [ "$GPU" = 1 ] && line+=", peak GPU $(peak_mib) MiB" ;;
  esac
  line+=")"
  echo "$line" | tee -a "$SUMMARY"
  echo "$line" >> "$STEPLOG"
}
# run_logged FILE SECONDS CMD...: CMD's output into FILE and the step log; its exit status
run_logged() {
  local f=$1 s=$2 rc
  shift 2
  echo "+ $*" >> "$STEPLOG"
  tmo "$s" "$@" > "$f" 2>&1
  rc=$?
  LAST_RC=$rc
  [ "$rc" = 124 ] && echo "[gpu_check]   (timed out after the step's limit or the budget)" >> "$f"
  cat "$f" >> "$STEPLOG"
  return "$rc"
}
LAST_RC=0
# why: the last run_logged command's end, for a FAILED line
why() { case "$LAST_RC" in 0) ;; 124 | 137) echo "(timed out)" ;; *) echo "(exit $LAST_RC)" ;; esac; }
show_tail() { echo "----- last lines of $1:"; tail -n "${2:-12}" "$1"; echo "-----"; }
skip_left() { [ "$(left)" -lt "$1" ] && { finish SKIPPED "(only $(left) s of the budget left)"; return 0; }; return 1; }

# Parsing (python3: the machine's torch python; stdlib only).
HELPER="$WORK/gpu_check_helper.py"
cat > "$HELPER" <<'PYEOF'
import json, math, re, sys

def parity(path):
    """medr1-parity report -> (counts line, {(case, check): (kind, type, error, ok)})."""
    checks, case, kind, counts = {}, None, None, "no report"
    for line in open(path, errors="replace"):
        m = re.match(r"^\[(PASS|FAIL|SKIP)\] (\S+) \(([^)]*)\)", line)
        if m:
            case, kind = m.group(2), m.group(3)
            continue
        m = re.match(r"^    (ok  |BAD )(.*?) +(max abs err|rel l2 err|mismatches) +(\S+)", line)
        if m and case:
            t = {"max abs err": "abs", "rel l2 err": "rel", "mismatches": "exact"}[m.group(3)]
            try:
                e = float(m.group(4))
            except ValueError:
                e = math.inf
            checks[(case, m.group(2).strip())] = (kind, t, e, m.group(1) == "ok  ")
        m = re.match(r"^(\d+) passed, (\d+) failed, (\d+) skipped", line)
        if m:
            counts = line.strip()
    return counts, checks

def worst(checks, pred):
    vals = [(v[2], k) for k, v in checks.items() if pred(k, v)]
    return max(vals) if vals else (None, None)

def fmt(e):
    return "n/a" if e is None else f"{e:.2e}"

cmd = sys.argv[1]
if cmd == "parity-summary":  # REPORT
    counts, ch = parity(sys.argv[2])
    e, k = worst(ch, lambda k, v: v[1] == "abs" and ("logits" in k[1] or "top5" in k[1]))
    h, _ = worst(ch, lambda k, v: v[1] == "rel" and k[1].startswith("hidden_states"))
    print(f"{counts}; worst logits abs err {fmt(e)}" + (f" ({k[0]}.{k[1]})" if k else "") +
          f"; worst hidden-state rel err {fmt(h)}")
elif cmd == "parity-compare":  # CPU_REPORT DEVICE_REPORT FACTOR FLOOR: exit 1 when a forward float check is off
    _, cpu = parity(sys.argv[2])
    _, dev = parity(sys.argv[3])
    factor, floor = float(sys.argv[4]), float(sys.argv[5])
    bad, n, worst_ratio, worst_key, other = [], 0, 0.0, None, 0
    for key, (kind, t, e, ok) in dev.items():
        if t == "exact":
            if not ok:
                bad.append(f"{key[0]}.{key[1]} exact mismatches {e:g}")
            continue
        if not kind.startswith("forward"):
            other += 1
            continue
        if key not in cpu:
            bad.append(f"{key[0]}.{key[1]} missing from the CPU report")
            continue
        c = cpu[key][2]
        n += 1
        ratio = e / max(c, 1e-30)
        if ratio > worst_ratio:
            worst_ratio, worst_key = ratio, key
        if not (e <= factor * c + floor):
            bad.append(f"{key[0]}.{key[1]} cuda {e:.2e} vs cpu {c:.2e}")
    le, _ = worst(dev, lambda k, v: v[0].startswith("forward") and v[1] == "abs" and "logits" in k[1])
    lc, _ = worst(cpu, lambda k, v: v[0].startswith("forward") and v[1] == "abs" and "logits" in k[1])
    msg = (f"{n} forward float checks, cuda err <= {factor:g} x cpu err + {floor:g}; worst logits err vs fp32 golden:"
           f" cuda {fmt(le)}, cpu {fmt(lc)}; worst ratio {worst_ratio:.2f}" +
           (f" ({worst_key[0]}.{worst_key[1]})" if worst_key else "") +
           f"; {other} float checks of other cases (preprocess, generate) not judged")
    if bad or n == 0:
        print(msg + "; OFF: " + "; ".join(bad[:6] or ["no forward checks found"]))
        sys.exit(1)
    print(msg)
elif cmd == "metrics":  # METRICS_JSONL STEPS
    recs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
    want = int(sys.argv[3])
    if len(recs) < want:
        print(f"{len(recs)} of {want} steps logged")
        sys.exit(1)
    r = recs[-1]
    keys = ["loss", "reward", "kl", "grad_norm", "completion_length", "step_time", "rollout_tokens_per_s",
            "train_tokens_per_s"]
    vals = {k: r[k] for k in keys if k in r}
    finite = all(isinstance(v, (int, float)) and math.isfinite(v) for rec in recs for v in rec.values()
                 if isinstance(v, (int, float)))
    print(f"{len(recs)} steps; last: " + ", ".join(f"{k} {v:.4g}" for k, v in vals.items()) +
          f"; step_time per step: " + " / ".join(f"{x['step_time']:.2f}" for x in recs if "step_time" in x) +
          ("" if finite else "; NON-FINITE values"))
    sys.exit(0 if finite else 1)
elif cmd == "config-2b":  # SRC_CONFIG DST_CONFIG: Qwen2-VL-2B-Instruct's shapes (tests/bench/ceilings.cpp)
    c = json.load(open(sys.argv[2]))
    c.update({"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
              "num_key_value_heads": 2, "max_window_layers": 28, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
              "tie_word_embeddings": True, "vocab_size": 151936, "torch_dtype": "bfloat16",
              "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}})
    c["vision_config"].update({"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4,
                               "patch_size": 14, "spatial_patch_size": 14, "spatial_merge_size": 2,
                               "temporal_patch_size": 2, "in_chans": 3, "in_channels": 3})
    json.dump(c, open(sys.argv[3], "w"), indent=2)
elif cmd == "deb-extract":  # DEB DEST: dpkg -x without dpkg (ar archive holding data.tar.{xz,gz,bz2})
    import io, tarfile
    raw = open(sys.argv[2], "rb").read()
    assert raw[:8] == b"!<arch>\n", sys.argv[2] + ": not an ar archive"
    pos = 8
    while pos + 60 <= len(raw):
        name, size = raw[pos:pos + 16].decode().strip().rstrip("/"), int(raw[pos + 48:pos + 58].decode().strip())
        if name.startswith("data.tar"):
            tarfile.open(fileobj=io.BytesIO(raw[pos + 60:pos + 60 + size]), mode="r:*").extractall(sys.argv[3])
            sys.exit(0)
        pos += 60 + size + (size & 1)
    sys.exit(sys.argv[2] + ": no data.tar member")
elif cmd == "bench":  # OUTPUT of medr1-bench-generate (one JSON line)
    for line in open(sys.argv[2]):
        if line.startswith("{"):
            r = json.loads(line)
            print(f"batch {r['batch']} {r['dtype']} {r.get('device', 'cpu')}: prompt {r['prompt_tokens']} tokens,"
                  f" prefill {r['prefill_tok_s']:.0f} tok/s, decode {r['decode_tok_s']:.1f} tok/s"
                  f" ({r['new_tokens']} new tokens)")
            sys.exit(0)
    print("no JSON line")
    sys.exit(1)
PYEOF
py() { "$PY" "$HELPER" "$@" 2>&1; }

# ---- env -----------------------------------------------------------------------------------------------------
GPU=0
begin env
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then GPU=1; fi
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -x "$d/nvcc" ] && { PATH="$d:$PATH"; break; }; done
fi
TORCH_INFO=$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.utils.cmake_prefix_path)' 2>&1)
TORCH_PREFIX=$(echo "$TORCH_INFO" | tail -1 | awk '{print $3}')
{
  # shellcheck disable=SC1091
  echo "os: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"); $(nproc) cores"
  [ "$GPU" = 1 ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo "torch ($PY): $TORCH_INFO"
  echo "c++: $(c++ --version 2>&1 | head -1); cmake: $(cmake --version 2>&1 | head -1); ninja: $(ninja --version 2>&1)"
  echo "nvcc: $(nvcc --version 2>&1 | tail -2 | head -1); pkg-config: $(command -v pkg-config || echo none)"
} >> "$STEPLOG" 2>&1
if [ "$GPU" = 1 ]; then
  NGPU=$(nvidia-smi -L | wc -l)
  ( while :; do
      echo "$(date +%s),$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)"
      sleep 0.25
    done >> "$MEMCSV" ) &
  MEM_PID=$!
  trap 'kill "$MEM_PID" 2>/dev/null' EXIT
  finish ok "$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1), $NGPU GPU(s);" \
    "torch $(echo "$TORCH_INFO" | tail -1 | cut -d' ' -f1-2)"
else
  NGPU=0
  finish "$([ "$CONFIGURE_ONLY" = 1 ] && echo ok || echo FAILED)" "no GPU visible (nvidia-smi);" \
    "torch $(echo "$TORCH_INFO" | tail -1 | cut -d' ' -f1-2)"
fi

# ---- deps: the carried .debs into $PREFIX, their .pc files pointed there -------------------------------------
begin deps
ndeb=0
for d in "$DEBS"/*.deb; do
  if command -v dpkg >/dev/null 2>&1; then dpkg -x "$d" "$PREFIX"; else py deb-extract "$d" "$PREFIX"; fi &&
    ndeb=$((ndeb + 1))
done
LIBDIR="$PREFIX/usr/lib/x86_64-linux-gnu"
# The .pc files say prefix=/usr (and some -I/usr/include, libdir=/usr/lib/...): point them into the prefix.
for pc in "$LIBDIR"/pkgconfig/*.pc "$PREFIX"/usr/share/pkgconfig/*.pc; do
  [ -f "$pc" ] && sed -i -E "s#^([A-Za-z_]+=)/usr#\\1$PREFIX/usr#; s#-([IL])/usr/#-\\1$PREFIX/usr/#g" "$pc"
done
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
PKGCFG=$(command -v pkg-config || true)
if [ -z "$PKGCFG" ]; then  # the carried pkgconf (its library lives in the prefix too)
  PKGCFG="$PREFIX/bin/pkg-config"
  mkdir -p "$PREFIX/bin"
  # shellcheck disable=SC2016  # $LD_LIBRARY_PATH and $@ are the wrapper's own
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
    "$LIBDIR" "$PREFIX/usr/bin/pkgconf" > "$PKGCFG"
  chmod +x "$PKGCFG"
fi
missing=""
for m in libpcre2-8 libutf8proc libpng; do "$PKGCFG" --cflags --libs "$m" >> "$STEPLOG" 2>&1 || missing+=" $m"; done
for h in gloo/context.h stb/stb_image.h spdlog/spdlog.h fmt/core.h nlohmann/json.hpp CLI/CLI.hpp jpeglib.h; do
  [ -f "$PREFIX/usr/include/$h" ] || missing+=" $h"
done
if [ "$ndeb" -ge "${#PKGS[@]}" ] && [ -z "$missing" ]; then
  finish ok "$ndeb .debs unpacked into $PREFIX (pkg-config: $PKGCFG)"
else
  finish FAILED "$ndeb of ${#PKGS[@]} .debs unpacked from $DEBS; missing:${missing:- none}"
fi
# The medr1 binaries find these libraries through their build-tree RUNPATH; set only for them, never globally
# (the prefix holds Debian's libpng / libjpeg / pcre2, which the machine's own tools must not pick up).
RUNENV=(env "LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")

# ---- tokenizer fixture (gitignored; made from the vendored .xz, with python's lzma when there is no xz) --------
begin tokenizer
TOK=tests/data/tokenizer/qwen2vl/tokenizer.json
if [ ! -f "$TOK" ]; then
  if command -v xz >/dev/null 2>&1; then
    run_logged "$WORK/tok.txt" 60 env MEDR1_PYTHON="$PY" bash scripts/tokenizer_fixtures.sh
  else
    run_logged "$WORK/tok.txt" 60 "$PY" -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as f, open(sys.argv[2], "wb") as o: shutil.copyfileobj(f, o)' \
      tests/data/tokenizer/qwen3/tokenizer.json.xz "$WORK/qwen3-tokenizer.json" &&
      run_logged "$WORK/tok2.txt" 60 "$PY" scripts/make_tokenizer_fixtures.py "$WORK/qwen3-tokenizer.json" \
        tests/data/tokenizer
  fi
fi
if [ -f "$TOK" ]; then finish ok "$TOK ($(stat -c %s "$TOK") bytes)"; else finish FAILED "no $TOK"; fi

# ---- configure + build -----------------------------------------------------------------------------------------
begin configure
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
# CMAKE_CXX_FLAGS: the prefix's headers as system headers, as /usr/include and its multiarch folder are on Debian
# (the gloo and stb headers and libjpeg's jconfig.h are on no target's include path). Torch's headers come after
# them (-idirafter, cmake/medr1_torch.cmake), so Debian's fmt 9 wins over the wheel's fmt 12, as on Debian.
run_logged "$WORK/configure.txt" 150 cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DMEDR1_CUDA=ON -DMEDR1_BUILD_TESTS=OFF -DMEDR1_BUILD_BENCH=ON -DMEDR1_WERROR=OFF \
  -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr" -DCMAKE_LIBRARY_PATH="$LIBDIR" \
  -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include" -DPKG_CONFIG_EXECUTABLE="$PKGCFG" \
  -DCMAKE_CXX_FLAGS="-isystem $PREFIX/usr/include -isystem $PREFIX/usr/include/x86_64-linux-gnu" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$LIBDIR" -DMEDR1_PYTHON="$(command -v "$PY")"
rc=$?
cp "$WORK/configure.txt" "$BUILDLOG"
if [ "$rc" = 0 ]; then
  finish ok "$(grep -m1 'medr1: LibTorch' "$WORK/configure.txt" | sed 's/^-- //')"
else
  finish FAILED "cmake exit $rc"
  grep -m 8 -A3 "CMake Error" "$WORK/configure.txt"
fi
[ "$CONFIGURE_ONLY" = 1 ] && { echo "[gpu_check] --configure-only: stopping; summary in $SUMMARY"; exit "$rc"; }

TARGETS=(medr1-parity medr1-train medr1-infer medr1-bench-generate)
begin build
KEEP=()
[ ${#GEN[@]} -gt 0 ] && KEEP=(-- -k 0)  # ninja: build the other targets past a failing one
tmo 330 cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" "${KEEP[@]}" >> "$BUILDLOG" 2>&1
rc=$?
built=""
for t in "${TARGETS[@]}"; do [ -x "$BUILD/$t" ] && built+=" $t"; done
if [ "$rc" = 0 ]; then
  finish ok "built:$built (-j $JOBS)"
else
  finish FAILED "exit $rc; built:${built:- nothing}"
  grep -m 12 -E "error|Error|undefined reference" "$BUILDLOG"
fi
have() { [ -x "$BUILD/$1" ] || { finish SKIPPED "($1 was not built)"; return 1; }; }
cuda_ok() { [ "$GPU" = 1 ] || { finish SKIPPED "(no GPU)"; return 1; }; }

# ---- parity ----------------------------------------------------------------------------------------------------
for set in tests/data/qwen2vl-tiny tests/data/qwen2_5vl-tiny; do
  name=$(basename "$set")
  present=1
  [ -f "$set/model.safetensors" ] && [ -f "$set/goldens.safetensors" ] || present=0
  begin "parity-cpu-$name"
  if [ "$present" = 0 ]; then
    finish SKIPPED "($set/model.safetensors or goldens.safetensors is not in the working tree)"
  elif have medr1-parity && ! skip_left 40; then
    if run_logged "$WORK/p-cpu-fp32-$name.txt" 120 "${RUNENV[@]}" "$BUILD/medr1-parity" --set "$set"; then
      finish ok "$(py parity-summary "$WORK/p-cpu-fp32-$name.txt")"
    else
      finish FAILED "$(why) $(py parity-summary "$WORK/p-cpu-fp32-$name.txt")"
      grep -E "^\[FAIL\]|BAD " "$WORK/p-cpu-fp32-$name.txt" | head -8
    fi
  fi
  [ "$present" = 1 ] || continue
  begin "parity-cuda-fp32-$name"
  if have medr1-parity && cuda_ok && ! skip_left 40; then
    if run_logged "$WORK/p-cuda-fp32-$name.txt" 120 "${RUNENV[@]}" "$BUILD/medr1-parity" --set "$set" \
        --device cuda; then
      finish ok "$(py parity-summary "$WORK/p-cuda-fp32-$name.txt")"
    else
      finish FAILED "$(why) $(py parity-summary "$WORK/p-cuda-fp32-$name.txt")"
      grep -E "^\[FAIL\]|BAD |medr1-parity:" "$WORK/p-cuda-fp32-$name.txt" | head -8
    fi
  fi
  begin "parity-bf16-$name"
  if have medr1-parity && cuda_ok && ! skip_left 60; then
    run_logged "$WORK/p-cpu-bf16-$name.txt" 120 "${RUNENV[@]}" "$BUILD/medr1-parity" --set "$set" --dtype bf16
    rc_cpu=$?
    run_logged "$WORK/p-cuda-bf16-$name.txt" 120 "${RUNENV[@]}" "$BUILD/medr1-parity" --set "$set" --dtype bf16 \
      --device cuda
    rc_cuda=$?
    cmp=$(py parity-compare "$WORK/p-cpu-bf16-$name.txt" "$WORK/p-cuda-bf16-$name.txt" 2 1e-3)
    rc_cmp=$?
    if [ "$rc_cpu" = 0 ] && [ "$rc_cuda" = 0 ] && [ "$rc_cmp" = 0 ]; then
      finish ok "$cmp"
    else
      finish FAILED "(exit cpu $rc_cpu, cuda $rc_cuda) $cmp"
    fi
  fi
done

# ---- training: the demo model ----------------------------------------------------------------------------------
# The demo-tiny model: models/demo-tiny when carried (setup.sh's warm-started one), else its config-only folder,
# which medr1-train initialises from the seed (what setup.sh's SFT warm start starts from).
DEMO="$WORK/demo-tiny"
rm -rf "$DEMO" && mkdir -p "$DEMO"
if [ -f models/demo-tiny/model.safetensors ]; then
  cp models/demo-tiny/*.json models/demo-tiny/*.safetensors "$DEMO/"
  DEMO_KIND="models/demo-tiny (warm-started)"
else
  cp configs/models/demo-tiny/*.json "$DEMO/"
  DEMO_KIND="configs/models/demo-tiny (seeded init)"
fi
cp "$TOK" "$DEMO/" 2>/dev/null
COMMON=(--dataset_name data/demo/train_easy.json --dataset_root data/demo --prompt_template nothink
        --save_steps 1000 --logging_steps 1 --max_pixels 12544 --min_pixels 3136 --device cuda)
rm -rf "$WORK/grpo-demo" "$WORK/sft-demo" "$WORK/nccl"
begin grpo-demo
if have medr1-train && cuda_ok && ! skip_left 40; then
  if run_logged "$WORK/grpo-demo.txt" 120 "${RUNENV[@]}" "$BUILD/medr1-train" "${COMMON[@]}" --algo grpo \
      --model_name_or_path "$DEMO" --output_dir "$WORK/grpo-demo" --max_steps 2 --num_generations 4 \
      --per_device_train_batch_size 1 --gradient_accumulation_steps 2 --max_completion_length 16 \
      --learning_rate 1e-3 --beta 0.04 --bf16 --gradient_checkpointing &&
      m=$(py metrics "$WORK/grpo-demo/metrics.jsonl" 2); then
    finish ok "$DEMO_KIND, bf16 + gradient checkpointing, G=4, GA=2: $m"
  else
    finish FAILED "$(why) $DEMO_KIND: ${m:-}"
    show_tail "$WORK/grpo-demo.txt"
  fi
fi
m=""
begin sft-demo
if have medr1-train && cuda_ok && ! skip_left 30; then
  if run_logged "$WORK/sft-demo.txt" 90 "${RUNENV[@]}" "$BUILD/medr1-train" "${COMMON[@]}" --algo sft \
      --model_name_or_path "$DEMO" --output_dir "$WORK/sft-demo" --max_steps 2 --per_device_train_batch_size 4 \
      --max_completion_length 16 --learning_rate 1e-3 &&
      m=$(py metrics "$WORK/sft-demo/metrics.jsonl" 2); then
    finish ok "$DEMO_KIND, fp32, batch 4: $m"
  else
    finish FAILED "$(why) ${m:-}"
    show_tail "$WORK/sft-demo.txt"
  fi
fi
begin infer-demo
if have medr1-infer && cuda_ok && ! skip_left 30; then
  if [ ! -f "$WORK/grpo-demo/model.safetensors" ]; then
    finish SKIPPED "(no model from grpo-demo)"
  elif t0=$(date +%s) && run_logged "$WORK/infer-demo.txt" 60 "${RUNENV[@]}" "$BUILD/medr1-infer" \
      --model "$WORK/grpo-demo" --tokenizer "$DEMO" --input data/demo/test_easy.json --dataset-root data/demo \
      --output "$WORK/infer-demo.jsonl" --template nothink --device cuda --dtype bf16 --batch-size 8 \
      --max-new-tokens 16 --quiet; then
    finish ok "$(wc -l < "$WORK/infer-demo.jsonl") answers of data/demo/test_easy.json in $(($(date +%s) - t0)) s" \
      "(bf16, batch 8, 16 new tokens)"
  else
    finish FAILED "$(why)"
    show_tail "$WORK/infer-demo.txt"
  fi
fi

# ---- the Qwen2-VL-2B shape -------------------------------------------------------------------------------------
B2="$WORK/qwen2vl-2b-shape"
rm -rf "$B2" && mkdir -p "$B2"
cp configs/models/demo-tiny/*.json "$B2/" && cp "$TOK" "$B2/" 2>/dev/null
py config-2b configs/models/demo-tiny/config.json "$B2/config.json" >> "$STEPLOG"
OUT2B="$WORK/grpo-2b"  # the final save writes ~9 GB of fp32 weights here (64 GiB disk)
rm -rf "$OUT2B"
m=""
begin grpo-2b
if have medr1-train && cuda_ok && ! skip_left 90; then
  t0=$(date +%s)
  if run_logged "$WORK/grpo-2b.txt" 240 "${RUNENV[@]}" "$BUILD/medr1-train" "${COMMON[@]}" --algo grpo \
      --model_name_or_path "$B2" --output_dir "$OUT2B" --max_steps 2 --num_generations 4 \
      --per_device_train_batch_size 1 --gradient_accumulation_steps 1 --max_completion_length 32 \
      --learning_rate 1e-6 --beta 0.04 --bf16 --gradient_checkpointing &&
      m=$(py metrics "$OUT2B/metrics.jsonl" 2); then
    finish ok "28 layers / 32 vision blocks / hidden 1536, random weights, bf16 + gradient checkpointing, G=4," \
      "32 new tokens max, beta 0.04 (reference model): $m; whole run $(($(date +%s) - t0)) s" \
      "(2 seeded inits, 2 steps, ~9 GB final save)"
  else
    finish FAILED "$(why) ${m:-}"
    show_tail "$WORK/grpo-2b.txt"
  fi
fi
cp "$OUT2B/metrics.jsonl" "$WORK/grpo-2b-metrics.jsonl" 2>/dev/null
rm -rf "$OUT2B"  # ~9 GB of fp32 weights
begin decode-2b
if have medr1-bench-generate && cuda_ok && ! skip_left 40; then
  figs=""
  ok=1
  for b in 1 8; do
    if run_logged "$WORK/decode-2b-b$b.txt" 120 "${RUNENV[@]}" "$BUILD/medr1-bench-generate" --device cuda \
        --dtype bf16 --batch "$b" --new-tokens 64; then
      figs+="${figs:+; }$(py bench "$WORK/decode-2b-b$b.txt")"
    else
      ok=0
      show_tail "$WORK/decode-2b-b$b.txt"
      break
    fi
    [ "$(left)" -lt 40 ] && break
  done
  if [ "$ok" = 1 ]; then finish ok "Qwen2-VL-2B shape, random weights: $figs"; else finish FAILED "$(why) ${figs:-}"; fi
fi
begin nccl-2gpu
if [ "$NGPU" -lt 2 ]; then
  finish SKIPPED "($NGPU GPU: NCCL refuses two ranks on one GPU)"
elif have medr1-train && ! skip_left 40; then
  if run_logged "$WORK/nccl.txt" 120 "${RUNENV[@]}" "$BUILD/medr1-train" --nproc-per-node 2 --master-port 29533 \
      "${COMMON[@]}" --algo sft --model_name_or_path "$DEMO" --output_dir "$WORK/nccl" --max_steps 2 \
      --per_device_train_batch_size 2 --max_completion_length 16 && m=$(py metrics "$WORK/nccl/metrics.jsonl" 2); then
    finish ok "2 ranks: $m"
  else
    finish FAILED "$(why) ${m:-}"
    show_tail "$WORK/nccl.txt"
  fi
fi

n_ok=$(grep -c ": ok " "$SUMMARY")
n_failed=$(grep -c ": FAILED " "$SUMMARY")
n_skipped=$(grep -c ": SKIPPED " "$SUMMARY")
line="[gpu_check] done in $(($(date +%s) - T_START)) s of ${BUDGET}: $n_ok ok, $n_failed FAILED, $n_skipped SKIPPED"
failed_steps=$(grep ": FAILED " "$SUMMARY" | sed -E 's/^\[gpu_check\] ([^:]+):.*/ \1/' | tr -d '\n')
[ "$n_failed" -gt 0 ] && line+=" (FAILED:$failed_steps)"
echo "$line" | tee -a "$SUMMARY"
[ "$n_failed" = 0 ]
