#!/usr/bin/env bash
# Benchmark: `agent run` idle for 60 s with 20 containers. Prints the agent's CPU time used
# while idle and its resident memory (RSS, and the peak). Run as root after
# `cargo build --release --locked` (uses target/release/agent, else target/debug/agent) and
# scripts/build-test-images.sh.
#   bench/daemon-idle.sh [IDLE_SECONDS] [CONTAINERS]
# MODE=bridge gives every container its own namespace, veth and address on the agent's default
# network (the periodic resync then also checks each container's veths); default MODE=none.
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${1:-60}
count=${2:-20}
mode=${MODE:-none}
case "$mode" in none|bridge) ;; *) echo "MODE must be none or bridge" >&2; exit 2 ;; esac
bin=target/release/agent
[ -x "$bin" ] || bin=target/debug/agent
[ -x "$bin" ] || { echo "build the agent first (cargo build --release --locked)" >&2; exit 1; }
[ -f /var/lib/agent-test-images/docker.tar ] || { echo "run scripts/build-test-images.sh first" >&2; exit 1; }

work=$(mktemp -d /tmp/agent-bench-idle-XXXXXX)
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
    --config "$work/config.toml" >/dev/null 2>&1 || echo "daemon-idle: agent system reset failed" >&2
  ip link del "$bridge" 2>/dev/null || true
  nft delete table ip "$inst" 2>/dev/null || true
  grep " $work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

u=$$
# Own names: start-up cleanup removes whatever carries the instance's names.
bridge="agb$((u % 100000))"
inst="agb$((u % 100000))"
cat > "$work/config.toml" <<CONF
stop_containers_on_exit = true
[network]
bridge = "$bridge"
subnet = "10.$((200 + u % 50)).$((u / 50 % 250)).0/24"
instance = "$inst"
veth_prefix = "ab$((u % 10000))"
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
before=$(cpu)
sleep "$idle"
after=$(cpu)
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
threads=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
cpu_ms=$(( (after - before) * 1000 / ticks ))
echo "agent idle for ${idle} s with $count containers (networkMode $mode):"
echo "  CPU time: ${cpu_ms} ms ($(awk -v c="$cpu_ms" -v s="$idle" 'BEGIN {printf "%.3f", c / (s * 10)}')% of one core)"
echo "  RSS: $((rss / 1024)) MiB (${rss} KiB), peak $((hwm / 1024)) MiB, threads $threads"
