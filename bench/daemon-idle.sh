#!/usr/bin/env bash
# Benchmark: `agent run` idle for 60 s with 20 containers. Prints the agent's CPU time used
# while idle and its resident memory (RSS and the peak; its anonymous, file-backed and code parts
# and PSS; the monitors' and the DNS server's memory). Run as root after
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
# RSS counts every resident page the process maps, shared or not: the binary's code (clean,
# file-backed, dropped first under memory pressure) is most of it. PSS shares each page among the
# processes mapping it; the anonymous part is the agent's own private memory.
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/smaps_rollup"; }
code=$(awk -v b="$(readlink -f "/proc/$pid/exe")" '
  /^[0-9a-f]+-[0-9a-f]+ / {m = ($2 ~ /x/ && $6 == b)} m && /^Rss:/ {s += $2} END {print s + 0}' "/proc/$pid/smaps")
echo "  of which anonymous $(kib "$pid" Anonymous) KiB, file-backed $(kib "$pid" Rss | awk -v a="$(kib "$pid" Anonymous)" '{print $1 - a}') KiB (the agent's code: $code KiB); PSS $(kib "$pid" Pss) KiB"
# The other long-lived processes of this agent: a monitor per container, the DNS server.
mon_n=0; mon_pss=0; dns=""
for p in /proc/[0-9]*; do
  c=$( { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null) || continue
  case "$c" in
    *" monitor --state-dir $work/state "*) mon_n=$((mon_n + 1)); mon_pss=$((mon_pss + $(kib "${p#/proc/}" Pss || echo 0))) ;;
    *dns-server*"$work"*) dns="$(kib "${p#/proc/}" Rss) KiB RSS, $(kib "${p#/proc/}" Pss) KiB PSS" ;;
  esac
done
echo "  monitors: $mon_n, PSS $((mon_pss / 1024)) MiB in all; DNS server: ${dns:-none}"
