#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests. Run as root (the end-to-end
# tests create namespaces, cgroups, mounts, bridges and firewall rules, each under unique names).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the real `agent` binary from target/debug: build it first.
cargo build --workspace --locked
cargo test --workspace --locked
# The README's first command, end to end: scripts/run-example.sh brings the example up, checks
# it (HTTP on 127.0.0.1:18080, the link alias), and cleans up (containers, bridges, firewall,
# its directory). It uses the example's fixed names (bridge agent-shop, port 18080).
example_dir=$(mktemp -d /tmp/agent-example-check.XXXXXX)
AGENT_EXAMPLE_DIR="$example_dir" scripts/run-example.sh --check
# Fuzz smoke run (docs/fuzz.md): 30 s per target. Unoptimised and without AddressSanitizer to
# keep the extra build short; `scripts/fuzz.sh --long` is the real (release, ASan) run.
FUZZ_BUILD="--dev -s none" FUZZ_SECONDS=30 scripts/fuzz.sh
