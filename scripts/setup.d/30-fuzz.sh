#!/usr/bin/env bash
# Installs cargo-fuzz (for scripts/fuzz.sh) from crates.io when it is missing. Idempotent.
set -euo pipefail
if cargo fuzz --version >/dev/null 2>&1; then
  exit 0
fi
cargo install cargo-fuzz --locked
