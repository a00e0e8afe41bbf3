#!/usr/bin/env bash
# Benchmark: the agent's CPU time per Prometheus scrape (`GET /metrics` on the API socket) with
# 50 containers running (issue 18: target under 10 ms). Scrapes SCRAPES times back to back and
# divides the agent's CPU time (utime + stime of /proc/PID/stat) by the count, less what the
# agent used idle over the same wall time. Run as root after `cargo build --release --locked`
# (uses target/release/agent, else target/debug/agent) and scripts/build-test-images.sh.
#   bench/metrics.sh [SCRAPES] [CONTAINERS]
# MODE=bridge (the default here) puts every container on the agent's network, so each scrape
# also reads veth counters; MODE=none skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
scrapes=${1:-500}
count=${2:-50}
mode=${MODE:-bridge}
case "$mode" in none|bridge) ;; *) echo "MODE must be none or bridge" >&2; exit 2 ;; esac
bin=target/release/agent
[ -x "$bin" ] || bin=target/debug/agent
[ -x "$bin" ] || { echo "build the agent first (cargo build --release --locked)" >&2; exit 1; }
[ -f /var/lib/agent-test-images/docker.tar ] || { echo "run scripts/build-test-images.sh first" >&2; exit 1; }

work=$(mktemp -d /tmp/agent-bench-metrics-XXXXXX)
chmod 755 "$work"
mkdir -m 755 "$work/manifests"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # Remove every container through the agent itself, then stop it.
    rm -f "$work"/manifests/*.yaml
    "$bin" apply --socket "$work/agent.sock" --state-dir "$work/state" >/dev/null 2>&1 || true
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  fi
  # The host-wide accepts (DOCKER-USER/FORWARD) and the instance's firewall go with the state.
  "$bin" system reset --state-dir "$work/state" --socket "$work/agent.sock" \
    --config "$work/config.toml" >/dev/null 2>&1 || echo "metrics: agent system reset failed" >&2
  ip link del "$bridge" 2>/dev/null || true
  nft delete table ip "$inst" 2>/dev/null || true
  grep " $work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

u=$$
# Own names: start-up cleanup removes whatever carries the instance's names.
bridge="agm$((u % 100000))"
inst="agm$((u % 100000))"
cat > "$work/config.toml" <<CONF
stop_containers_on_exit = true
[network]
bridge = "$bridge"
subnet = "10.$((150 + u % 50)).$((u / 50 % 250)).0/24"
instance = "$inst"
veth_prefix = "am$((u % 10000))"
[log]
level = "warn"
format = "json"
CONF
cat > "$work/manifests/image.yaml" <<'Y'
apiVersion: agent/v1
kind: Image
metadata:
  name: busybox
spec:
  dockerArchive:
    path: /var/lib/agent-test-images/docker.tar
Y
for i in $(seq 1 "$count"); do
  cat > "$work/manifests/c$i.yaml" <<Y
apiVersion: agent/v1
kind: Container
metadata:
  name: c$i
spec:
  image: busybox
  command: ["/bin/sleep", "100000"]
  networkMode: $mode
  restart: always
  stopGracePeriod: 1s
Y
done
chmod 644 "$work"/manifests/*.yaml

"$bin" run --manifests "$work/manifests" --state-dir "$work/state" --socket "$work/agent.sock" \
  --config "$work/config.toml" 2>"$work/agent.log" &
pid=$!

start=$(date +%s)
while true; do
  n=$("$bin" ps -o json --socket "$work/agent.sock" --state-dir "$work/state" 2>/dev/null \
      | grep -o '"state": "running"' | wc -l || true)
  [ "$n" -ge "$count" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "the agent exited:" >&2; tail -20 "$work/agent.log" >&2; exit 1; }
  if [ $(( $(date +%s) - start )) -gt 300 ]; then
    echo "only $n of $count containers running after 300 s; agent log:" >&2
    tail -20 "$work/agent.log" >&2
    exit 1
  fi
  sleep 1
done
echo "$count containers running after $(( $(date +%s) - start )) s"
sleep 2

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
scrape() { curl -sf --unix-socket "$work/agent.sock" http://agent/metrics; }
scrape > "$work/sample.txt"
series=$(grep -c '^container_' "$work/sample.txt" || true)

# The same wall time idle, then scraping.
t0=$(date +%s%N)
for _ in $(seq 1 "$scrapes"); do scrape > /dev/null; done
t1=$(date +%s%N)
wall_ms=$(( (t1 - t0) / 1000000 ))
before=$(cpu)
sleep "$(awk -v w="$wall_ms" 'BEGIN {printf "%.3f", w / 1000}')"
idle=$(( $(cpu) - before ))
before=$(cpu)
for _ in $(seq 1 "$scrapes"); do scrape > /dev/null; done
busy=$(( $(cpu) - before ))

per=$(awk -v b="$busy" -v i="$idle" -v n="$scrapes" -v t="$ticks" \
  'BEGIN {printf "%.2f", (b - i) * 1000 / t / n}')
echo "$scrapes scrapes of /metrics with $count containers (networkMode $mode), $series container series, $(wc -c < "$work/sample.txt") bytes each:"
echo "  wall: $(awk -v w="$wall_ms" -v n="$scrapes" 'BEGIN {printf "%.2f", w / n}') ms per scrape (curl included)"
echo "  agent CPU: ${per} ms per scrape (busy $((busy * 1000 / ticks)) ms, idle over the same time $((idle * 1000 / ticks)) ms; target < 10 ms)"
