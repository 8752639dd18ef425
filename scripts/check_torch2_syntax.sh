#!/usr/bin/env bash
# Keeps the LibTorch 2.x path honest without a GPU: fetches Debian trixie's libtorch-dev 2.6
# (+ libgloo-dev) with `apt-get download` through a private apt state (the URI comes from this
# machine's own Debian apt sources), unpacks it with `dpkg -x` (never installs it: it needs a
# newer libc) and compiles every source of ours with -fsyntax-only against its headers.
# Env: MEDR1_TORCH26_DIR (unpack dir, default ~/.cache/medr1/torch26), MEDR1_SYNTAX_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T26="${MEDR1_TORCH26_DIR:-$HOME/.cache/medr1/torch26}"

if [ ! -f "$T26/usr/include/torch/csrc/api/include/torch/version.h" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # The Debian mirror this machine already uses (first URIs line of a Debian sources file).
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  fi
  [ -n "$uri" ] || { echo "check_torch2_syntax: no Debian apt source found" >&2; exit 1; }
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
  printf 'deb [signed-by=%s] %s trixie main\n' "$keyring" "$uri" > "$work/sources.list"
  opts=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
        -o Dir::State::status=/dev/null -o APT::Architecture=amd64 -q)
  echo "[torch2] fetching trixie libtorch-dev headers"
  apt-get "${opts[@]}" update >/dev/null
  (cd "$work/debs" && apt-get "${opts[@]}" download libtorch-dev libgloo-dev >/dev/null)
  mkdir -p "$T26"
  for d in "$work"/debs/*.deb; do dpkg -x "$d" "$T26"; done
fi
ver=$(grep -h 'TORCH_VERSION ' "$T26/usr/include/torch/csrc/api/include/torch/version.h" | head -1 || true)
echo "[torch2] headers: $T26 ($ver)"

mapfile -t files < <(find src apps tests -name '*.cpp' | sort)
inc=(-I"$ROOT/include" -I"$ROOT/src" -I"$ROOT/tests"
     -isystem "$T26/usr/include" -isystem "$T26/usr/include/torch/csrc/api/include"
     -isystem /usr/include/stb)
defs=(-DMEDR1_TEST_DATA=\"tests/data\" -DMEDR1_SOURCE_DIR=\"$ROOT\" -DMEDR1_BINARY_DIR=\"build\")
fail=0
check() {
  if ! g++ -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror "${inc[@]}" "${defs[@]}" "$1" 2> "$1.t2err"; then
    echo "[torch2] FAIL $1"; cat "$1.t2err"; rm -f "$1.t2err"; return 1
  fi
  rm -f "$1.t2err"
}
export -f check
export T26 ROOT
jobs="${MEDR1_SYNTAX_JOBS:-2}"
start=$(date +%s)
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -I{} bash -c "$(declare -p inc defs); $(declare -f check); check {}" || fail=1
echo "[torch2] ${#files[@]} files checked in $(( $(date +%s) - start )) s"
if [ $fail -ne 0 ]; then echo "[torch2] syntax check against LibTorch 2.6 FAILED" >&2; exit 1; fi
echo "[torch2] all sources parse against LibTorch 2.6"
