#!/usr/bin/env bash
# Exec driver benchmark: start latency (spec written -> process running) of the agent's monitor
# against bare `runc run` on the same bundle, and the monitor's private memory while it waits.
# Needs root, the busybox test images (scripts/build-test-images.sh) and runc (scripts/apt/exec.list).
# Release build; ROUNDS (default 20) and MONITORS (default 5) tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-test-images.sh
cargo build --release -p agent --locked
AGENT_BIN="$PWD/target/release/agent" cargo bench -p agent-e2e --bench exec --locked
