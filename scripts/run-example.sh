#!/usr/bin/env bash
# Builds the agent and runs it on examples/manifests. At this stage it validates the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
target/release/agent validate examples/manifests
