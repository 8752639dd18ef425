#!/usr/bin/env bash
# Placeholder until the tokenizer fixtures step lands: installs the npm packages the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
exit 0
