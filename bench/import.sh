#!/usr/bin/env bash
# Import throughput of the graph driver against raw sha256 speed, on the same data in the same run.
#
# Builds an OCI image layout of SIZE_MB (default 240) of random data in LAYERS (default 4)
# uncompressed layers, then, RUNS times each (default 5), times:
#   - `agent image load` of that layout into a fresh state directory (copies every blob into the
#     verified blob store with fsync, unpacks every layer, records the image);
#   - `sha256sum` over the same layer files (the floor: one hashing pass, no writes).
# and prints the medians in MB/s (1 MB = 10^6 bytes). The files are read from the page cache in
# both cases (a warm-up pass reads them first), so the figure compares the agent's work against
# hashing, not disk reads.
#
# Usage: bench/import.sh            (AGENT_BIN=path to use another binary; default: the release
#                                    build, brought up to date here; SIZE_MB, LAYERS, RUNS, WORKDIR)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-240}
LAYERS=${LAYERS:-4}
RUNS=${RUNS:-5}
if [ -z "${AGENT_BIN:-}" ]; then
  AGENT_BIN=target/release/agent
  cargo build --release --quiet -p agent --bin agent # a no-op when up to date; never a stale binary
fi
WORK=$(mktemp -d "${WORKDIR:-/var/tmp}/agent-bench-import.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- the image: LAYERS uncompressed tars of random files ----
OCI=$WORK/oci
mkdir -p "$OCI/blobs/sha256" "$WORK/src"
per_layer=$((SIZE_MB / LAYERS))
diff_ids=() layer_descs=()
for i in $(seq 1 "$LAYERS"); do
  d=$WORK/src/l$i
  mkdir -p "$d/data$i"
  # A few files per layer (one big, some small) so unpacking creates more than one file.
  head -c $((per_layer * 1000000 - 4 * 100000)) /dev/urandom >"$d/data$i/big.bin"
  for j in 1 2 3 4; do head -c 100000 /dev/urandom >"$d/data$i/small$j.bin"; done
  tar --create --file="$WORK/layer$i.tar" --directory="$d" --format=gnu --numeric-owner .
  rm -rf "$d"
  h=$(sha256sum "$WORK/layer$i.tar" | cut -d' ' -f1)
  s=$(stat -c %s "$WORK/layer$i.tar")
  mv "$WORK/layer$i.tar" "$OCI/blobs/sha256/$h"
  diff_ids+=("\"sha256:$h\"")
  layer_descs+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$h\",\"size\":$s}")
done
join() { local IFS=,; echo "$*"; }
case "$(uname -m)" in
  x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; armv7l) arch=arm ;; *) arch=$(uname -m) ;;
esac
variant=
[ "$arch" = arm64 ] && variant=',"variant":"v8"'
[ "$arch" = arm ] && variant=',"variant":"v7"'
cfg="{\"architecture\":\"$arch\"$variant,\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$(join "${diff_ids[@]}")]}}"
printf '%s' "$cfg" >"$WORK/cfg"
ch=$(sha256sum "$WORK/cfg" | cut -d' ' -f1) cs=$(stat -c %s "$WORK/cfg")
mv "$WORK/cfg" "$OCI/blobs/sha256/$ch"
man="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$ch\",\"size\":$cs},\"layers\":[$(join "${layer_descs[@]}")]}"
printf '%s' "$man" >"$WORK/man"
mh=$(sha256sum "$WORK/man" | cut -d' ' -f1) ms=$(stat -c %s "$WORK/man")
mv "$WORK/man" "$OCI/blobs/sha256/$mh"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' "$mh" "$ms" >"$OCI/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"

layer_files=()
for id in "${diff_ids[@]}"; do
  h=${id//\"/}; layer_files+=("$OCI/blobs/sha256/${h#sha256:}")
done
bytes=$(cat "${layer_files[@]}" | wc -c)

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v b="$bytes" -v t="$1" 'BEGIN { printf "%.1f", b / 1e6 / t }'; }

cat "${layer_files[@]}" >/dev/null # warm the page cache
imp=() sha=()
for run in $(seq 1 "$RUNS"); do
  state=$WORK/state$run
  t0=$(now)
  "$AGENT_BIN" image load --state-dir "$state" --graph-driver vfs "$OCI" >/dev/null
  t1=$(now)
  imp+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  rm -rf "$state"
  t0=$(now)
  sha256sum "${layer_files[@]}" >/dev/null
  t1=$(now)
  sha+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done

ti=$(median "${imp[@]}") ts=$(median "${sha[@]}")
echo "image: $LAYERS uncompressed layers, $bytes bytes of random data ($(uname -m), $(nproc) CPUs)"
echo "agent image load : median $(printf '%.2f' "$ti") s  $(mbps "$ti") MB/s   (runs: ${imp[*]})"
echo "sha256sum        : median $(printf '%.2f' "$ts") s  $(mbps "$ts") MB/s   (runs: ${sha[*]})"
awk -v a="$ti" -v b="$ts" 'BEGIN { printf "import / sha256 speed: %.2f\n", b / a }'
