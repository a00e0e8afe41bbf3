#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (manifest_parse, layer_unpack) on the pinned stable
# toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags; no nightly is needed). See
# docs/fuzz.md.
#
#   scripts/fuzz.sh                 short run: 30 s per target (CI smoke run)
#   scripts/fuzz.sh --long          long run: 30 min per target (FUZZ_SECONDS overrides)
#   scripts/fuzz.sh TARGET [SECS]   one target
#
# FUZZ_BUILD="-O" (default: release with debug assertions and AddressSanitizer) or e.g.
# FUZZ_BUILD="--dev -s none" (faster to build, slower to run). The build goes to
# target/fuzz (inside the workspace's target directory).
#
# The corpus lives in fuzz/corpus/<target> (not committed) and is seeded from fuzz/seeds/<target>,
# examples/manifests and the test image's small layer. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script fail; reproduce with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --target-dir target/fuzz -O <target> \
#     fuzz/artifacts/<target>/<file>
# Prints each target's executions per second from libFuzzer's final stats.
set -euo pipefail
cd "$(dirname "$0")/.."

long=0
targets=(manifest_parse layer_unpack)
seconds=""
if [ "${1:-}" = "--long" ]; then
  long=1
  shift
fi
if [ $# -gt 0 ]; then
  targets=("$1")
  seconds="${2:-}"
fi
if [ -z "$seconds" ]; then
  if [ "$long" = 1 ]; then seconds="${FUZZ_SECONDS:-1800}"; else seconds="${FUZZ_SECONDS:-30}"; fi
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is not installed; run scripts/setup.d/30-fuzz.sh" >&2
  exit 1
fi
export RUSTC_BOOTSTRAP=1

for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
done
if [ -d examples/manifests ]; then
  cp -n examples/manifests/*.yaml fuzz/corpus/manifest_parse/ 2>/dev/null || true
fi

# Sandboxes of the targets (layer_unpack's <box> per fuzzing process) go in a directory of this
# run, removed at the end: libFuzzer ends a run by exiting, so the targets cannot clean up.
fuzz_tmp=$(mktemp -d /tmp/agent-fuzz-XXXXXX)
trap 'rm -rf "$fuzz_tmp"' EXIT
export AGENT_FUZZ_TMP="$fuzz_tmp"

read -r -a build <<<"${FUZZ_BUILD:--O}"
build+=(--fuzz-dir fuzz --target-dir target/fuzz)
echo "fuzz: building targets (cargo fuzz build ${build[*]})"
start=$(date +%s)
cargo fuzz build "${build[@]}"
echo "fuzz: built in $(( $(date +%s) - start )) s"
status=0
for t in "${targets[@]}"; do
  log="target/fuzz/$t.log"
  mkdir -p "fuzz/artifacts/$t"
  echo "fuzz: $t for ${seconds}s"
  set +e
  cargo fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{s+=$2} END {print s+0}')
  eps=$(grep -a 'stat::average_exec_per_sec' "$log" | awk '{s+=$2} END {print s+0}')
  cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
  echo "fuzz: $t: ${runs} runs, ${eps} exec/s, coverage ${cov:-?} edges, exit $rc (log: $log)"
  if [ "$rc" != 0 ]; then
    tail -n 40 "$log" >&2
    status=1
  fi
done
exit "$status"
