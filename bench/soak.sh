#!/usr/bin/env bash
# Soak test (issue 20 item 5): one agent, ~30 busybox containers, churn and faults for DURATION,
# sampled every SAMPLE_EVERY seconds; at the end convergence and leak checks, the growth per hour
# of every sampled quantity (least-squares fit after WARMUP) and a plot.
#
#   bench/soak.sh                     10 minutes (a smoke run; CI can afford it)
#   DURATION=4h bench/soak.sh         a long run (DURATION: 90s, 30m, 4h, ...)
#   OUT=/work/soak-run bench/soak.sh  where everything is written (default
#                                     bench/results/soak-<UTC time>, ignored by git)
#   bench/soak.sh install             installs what it needs (scripts/apt/bench.list)
#   bench/soak.sh report OUT [WARMUP] rebuild the growth table and the plot from OUT/samples.csv
#   bench/soak.sh clean OUT           remove what a SIGKILLed run (no clean-up) left on the host
#
# Workload (every container on the agent's default bridge network, its own subnet):
#   s1..s9   `restart: always`, steady, with a health check every 10 s
#   c1, c2   crash-looping: exit 1 after 12 s (longer than restart.reset_after: the backoff resets)
#   c3, c4   crash-looping: exit 1 after 1 s (the backoff grows to its cap)
#   o1..o3   `restart: on-failure, maxRetries: 3`, exit 3 after 2 s: must end exited with 3 restarts
#   e1..e12  edited every EDIT_MIN..EDIT_MAX s (a new `VER` env, which recreates the container and
#            which it writes to a marker file, or only a new label); atomic renames and in-place
#            rewrites alike
#   srv, cli a pair linked by alias (`cli` fetches `http://web/` every 10 s); srv's port published
#            on 127.0.0.1 and fetched by this script
# Faults: every KILL_EVERY the agent is SIGKILLed and started again after 0-3 s; every BURST_EVERY
# an edit burst: 6 edited files rewritten in quick succession, a broken version first (YAML syntax
# error, unknown field, bad value, file cut half-way), then 70% of them fixed at once, the rest left
# broken until their next edit; a broken extra file and a short-lived extra container come and go.
# Every MONITOR_KILL_EVERY (7 min; 0: never) the monitor of a random steady container is SIGKILLed
# (the agent notices and supervises it again, issue 20 item 1).
# `agent events -f` follows throughout (reconnecting after each agent kill), counting events and
# missing ids.
#
# Knobs: DURATION (10m), SAMPLE_EVERY (10), KILL_EVERY (5m, 0 = never), BURST_EVERY (4m),
# EDIT_MIN/EDIT_MAX (20/60 s), MONITOR_KILL_EVERY (7m, 0 = never), WARMUP (15 min, at most a third
# of DURATION), AGENT_BIN (default target/release/agent, built when missing; copied to OUT so that
# a rebuild during a long run changes nothing), SEED (random seed: $$), KEEP_WORK=1 (keep the state
# directory), AGENT_ENV (extra environment of the agent, e.g. `MALLOC_ARENA_MAX=4` to compare
# allocator settings), EVENT_CAP (the agent's `event_cap`, default 10,000: a smaller one brings the
# store to its steady size within the warm-up).
#
# Sampled (OUT/samples.csv, one row per sample; see bench/soak_sample.py): the agent's RSS,
# anonymous RSS, fds, threads, CPU; store (state.db + WAL) and container log sizes, the agent's
# own log; monitors and their RSS, exec dirs, veths, namespaces, nftables and iptables rules,
# mounts; `agent ps` latency, containers listed and running; events followed, missing, reconnects.
# At the end (OUT/summary.md): convergence (every edited file at its last valid content: its
# container running with that VER and label; s* running and healthy; o* exited after 3 restarts;
# the published port answering; nothing from broken files), then everything removed through the
# agent and the leak check (veths, namespaces, mounts, nftables table, iptables rules, cgroups of
# every container id seen, monitors) before `agent system reset` cleans up for good.
#
# Host hygiene: own state directory, manifest directory, bridge, subnet, nftables table, veth prefix
# and namespace names (all derived from $$); traffic only to 127.0.0.1 and to its own containers.
# Everything is removed on exit, Ctrl-C or SIGTERM.
set -euo pipefail
# bash reads a script while it runs it: a checkout updated during a multi-hour run changes the
# lines still to come (three runs once ended in "command not found" instead of their end-of-run
# checks that way). So the script runs from a private copy, removed at once (bash keeps it open).
if [ -z "${SOAK_REPO:-}" ]; then
  SOAK_REPO=$(cd "$(dirname "$0")/.." && pwd)
  copy=$(mktemp /tmp/agent-soak-XXXXXX)
  cp "$0" "$copy"
  SOAK_REPO=$SOAK_REPO exec bash "$copy" "$@"
fi
case "$0" in /tmp/agent-soak-*) rm -f "$0" ;; esac
cd "$SOAK_REPO"
repo=$PWD
[ "$(id -u)" = 0 ] || { echo "soak: needs root" >&2; exit 1; }

if [ "${1:-}" = install ]; then
  mapfile -t pk < <(sed 's/#.*//' scripts/apt/bench.list | tr -s ' \t' '\n' | grep -v '^$')
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${pk[@]}"
  exit 0
fi

secs() { # 90s | 30m | 4h | 1d | 120 -> seconds
  case "$1" in
    *d) echo $(( ${1%d} * 86400 )) ;; *h) echo $(( ${1%h} * 3600 )) ;;
    *m) echo $(( ${1%m} * 60 )) ;; *s) echo "${1%s}" ;; *) echo "$1" ;;
  esac
}
DURATION_S=$(secs "${DURATION:-10m}")
KILL_S=$(secs "${KILL_EVERY:-5m}")
BURST_S=$(secs "${BURST_EVERY:-4m}")
MONKILL_S=$(secs "${MONITOR_KILL_EVERY:-7m}")
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
EDIT_MIN=${EDIT_MIN:-20}
EDIT_MAX=${EDIT_MAX:-60}
WARMUP_S=$(secs "${WARMUP:-15m}")
[ "$WARMUP_S" -gt $(( DURATION_S / 3 )) ] && WARMUP_S=$(( DURATION_S / 3 ))
RANDOM=${SEED:-$$}

if [ "${1:-}" = report ]; then
  d=${2:?usage: bench/soak.sh report OUT [WARMUP]}
  python3 bench/soak_sample.py report "$d/samples.csv" "$d/soak" "$(secs "${3:-$WARMUP_S}")"
  exit 0
fi

# After a run that was SIGKILLed (the script and its agent gone, no clean-up): remove what it
# left through its own binary and state: its manifests moved to OUT/manifests-at-stop, the agent
# started on an empty manifest directory until every container is removed, then stopped; its
# monitors killed, `agent system reset`, mounts under OUT/work unmounted.
if [ "${1:-}" = clean ]; then
  d=$(cd "${2:?usage: bench/soak.sh clean OUT}" && pwd)
  work=$d/work
  BIN=$d/bin/agent
  if [ ! -x "$BIN" ] || [ ! -d "$work/state" ]; then
    echo "soak clean: $d has no bin/agent or work/state (nothing to clean?)" >&2
    exit 1
  fi
  owns() { { tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null | grep -q -- "--state-dir $work/state "; }
  p=$(cat "$work/agent.pid" 2>/dev/null || true)
  if [ -n "$p" ] && owns "$p"; then
    echo "soak clean: the run's agent ($p) still runs; stop its soak.sh with SIGTERM instead (it cleans up)" >&2
    exit 1
  fi
  C() { "$BIN" "$@" --socket "$work/agent.sock" --state-dir "$work/state"; }
  mkdir -p "$d/manifests-at-stop"
  mv "$work"/manifests/*.yaml "$d/manifests-at-stop/" 2>/dev/null || true
  setsid "$BIN" run --manifests "$work/manifests" --state-dir "$work/state" --socket "$work/agent.sock" \
    --config "$work/config.toml" 2>>"$d/clean.log" &
  cp=$!
  for i in $(seq 1 600); do
    curl -s -f -m 2 --unix-socket "$work/agent.sock" http://agent/v1/ps >/dev/null 2>&1 && break
    kill -0 "$cp" 2>/dev/null || { echo "soak clean: the agent exited (see $d/clean.log)" >&2; exit 1; }
    sleep 0.1
  done
  for i in $(seq 1 180); do
    [ "$(C ps -o json 2>/dev/null | grep -c '"name"' || true)" = 0 ] && break
    sleep 1
  done
  left=$(C ps -o json 2>/dev/null | grep -c '"name"' || true)
  kill -TERM "$cp" 2>/dev/null || true
  wait "$cp" 2>/dev/null || true
  for m in /proc/[0-9]*; do
    { tr '\0' ' ' < "$m/cmdline"; } 2>/dev/null | grep -q -- " monitor --state-dir $work/state " \
      && { kill -KILL "${m#/proc/}" 2>/dev/null || true; }
  done
  "$BIN" system reset --state-dir "$work/state" --socket "$work/agent.sock" --config "$work/config.toml"
  grep " $work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  echo "soak clean: containers still listed at the end: $left; manifests kept in $d/manifests-at-stop; state kept in $work/state"
  exit 0
fi

OUT=${OUT:-bench/results/soak-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$OUT/work
LOG=$OUT/soak.log
say() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$LOG" >&2; }

IMAGE_TAR=/var/lib/agent-test-images/docker.tar
[ -f "$IMAGE_TAR" ] || { echo "run scripts/build-test-images.sh first" >&2; exit 1; }
if [ -z "${AGENT_BIN:-}" ]; then
  [ -x target/release/agent ] || cargo build --release -p agent --locked --quiet
  AGENT_BIN=target/release/agent
fi
mkdir -p "$OUT/bin"
cp "$AGENT_BIN" "$OUT/bin/agent.new" && mv "$OUT/bin/agent.new" "$OUT/bin/agent"
# The monitors' waiting half (without it they fall back to the whole agent binary).
w=$(dirname "$AGENT_BIN")/agent-monitor-wait
[ -x "$w" ] && cp "$w" "$OUT/bin/agent-monitor-wait"
BIN=$OUT/bin/agent

u=$$
inst="ags$((u % 100000))"
bridge="ags$((u % 100000))"
vprefix="as$((u % 10000))"
subnet="10.$((150 + u % 50)).$((u / 50 % 250)).0/24"
A() { "$BIN" "$@" --socket "$work/agent.sock" --state-dir "$work/state"; }

agent_pid=""
sampler_pid=""
follower_pid=""
cleaned=""
torn_down=""
declare -A ids_seen=()

# ------------------------------------------------------------------ the agent --------------------
# The agent runs in its own session: a Ctrl-C reaches this script only, and the clean-up removes
# the containers through the agent.
agent_start() {
  env ${AGENT_ENV:-} setsid "$BIN" run --manifests "$work/manifests" --state-dir "$work/state" --socket "$work/agent.sock" \
    --config "$work/config.toml" 2>>"$OUT/agent.log" &
  agent_pid=$!
  echo "$agent_pid" > "$work/agent.pid"
  local i
  for i in $(seq 1 600); do
    # its API, not `agent ps` (which reads the store when nothing listens)
    curl -s -f -m 2 --unix-socket "$work/agent.sock" http://agent/v1/ps >/dev/null 2>&1 && return 0
    kill -0 "$agent_pid" 2>/dev/null || { say "the agent exited at start:"; tail -5 "$OUT/agent.log" >&2; return 1; }
    sleep 0.1
  done
  say "the agent did not answer within 60 s"; return 1
}
agent_kill9() {
  [ -n "$agent_pid" ] || return 0
  kill -KILL "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" 2>/dev/null || true
  agent_pid=""
}

# monitor_pids: the `agent monitor` processes of this run's state directory
monitor_pids() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null < "$p/cmdline" | grep -q -- " monitor --state-dir $work/state " && echo "${p#/proc/}"
  done
  return 0
}
kill_leftovers() { # SIGKILL this run's monitors and their containers' processes
  local m c
  for m in $(monitor_pids); do
    for c in $(cat /proc/"$m"/task/*/children 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
    kill -KILL "$m" 2>/dev/null || true
  done
}

# ------------------------------------------------------------------ manifests --------------------
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
container() { # NAME RESTART COMMAND [extra spec lines...]
  local name=$1 restart=$2 cmd=$3; shift 3
  printf '# soak container %s\napiVersion: agent/v1\nkind: Container\nmetadata:\n  name: %s\n' "$name" "$name"
  printf '  labels: {soak: "%s"%s}\n' "$u" "${LABEL_EXTRA:-}"
  printf 'spec:\n  image: busybox\n  command: ["/bin/sh", "-c", "%s"]\n  restart: %s\n  stopGracePeriod: 2s\n' "$cmd" "$restart"
  printf '  volumes:\n    - {bind: %s, target: /m}\n' "$work/marks"
  local l; for l in "$@"; do printf '  %s\n' "$l"; done
}
TERM_OK="trap 'exit 0' TERM; sleep 1000000 & wait"
write_atomic() { # FILE (content on stdin)
  local f=$1 tmp; tmp=$work/stage/$(basename "$1")
  cat > "$tmp"; chmod 644 "$tmp"; mv "$tmp" "$f"
}
write_inplace() { cat > "$1"; chmod 644 "$1"; }

declare -A ver=() rev=() good_ver=() good_rev=()
edited_yaml() { # NAME VER REV
  LABEL_EXTRA=", rev: \"$3\"" container "$1" always "echo \$VER > /m/$1; $TERM_OK" "env: {VER: \"$2\"}"
}
broken_yaml() { # NAME KIND
  case "$2" in
    0) printf 'apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: %s\nspec: [\n' "$1" ;;
    1) edited_yaml "$1" 999 999 | sed 's/^  image: busybox/  imagee: busybox/' ;;
    2) edited_yaml "$1" 999 999 | sed 's/^  restart: always/  restart: sometimes/' ;;
    *) edited_yaml "$1" 999 999 | sed -n '1,/command:/p' | sed 's/\(command: \["\/bin\/sh", "-c", "echo\).*/\1/' ;;
  esac
}

write_manifests() {
  local i
  cat > "$work/manifests/image.yaml" <<Y
apiVersion: agent/v1
kind: Image
metadata:
  name: busybox
spec:
  dockerArchive:
    path: $IMAGE_TAR
Y
  for i in $(seq 1 9); do
    container "s$i" always "touch /tmp/ok; $TERM_OK" \
      'healthcheck: {command: ["/bin/sh", "-c", "test -f /tmp/ok"], interval: 10s, timeout: 2s, retries: 3}' \
      > "$work/manifests/s$i.yaml"
  done
  container c1 always "sleep 12; exit 1" > "$work/manifests/c1.yaml"
  container c2 always "sleep 12; exit 1" > "$work/manifests/c2.yaml"
  container c3 always "sleep 1; exit 1" > "$work/manifests/c3.yaml"
  container c4 always "sleep 1; exit 1" > "$work/manifests/c4.yaml"
  for i in 1 2 3; do
    container "o$i" "{policy: on-failure, maxRetries: 3}" "sleep 2; exit 3" > "$work/manifests/o$i.yaml"
  done
  for i in $(seq 1 12); do
    ver[e$i]=1; rev[e$i]=1; good_ver[e$i]=1; good_rev[e$i]=1
    edited_yaml "e$i" 1 1 > "$work/manifests/e$i.yaml"
  done
  container srv always "mkdir -p /www; echo soak > /www/index.html; exec httpd -f -p 80 -h /www" \
    "ports: [\"127.0.0.1:$hport:80/tcp\"]" > "$work/manifests/srv.yaml"
  container cli always "while true; do if wget -q -O /m/cli.got http://web/; then echo ok > /m/cli; else echo fail > /m/cli; fi; sleep 10; done" \
    "links: [{container: srv, alias: web}]" > "$work/manifests/cli.yaml"
  chmod 644 "$work"/manifests/*.yaml
}

# ------------------------------------------------------------------ faults and edits -------------
edits=0; broken_writes=0; bursts=0; agent_kills=0; monitor_kills=0; port_ok=0; port_fail=0
burst_extra=""
edit_one() { # NAME [broken first]
  local n=$1 f=$work/manifests/$1.yaml
  rev[$n]=$(( rev[$n] + 1 ))
  (( RANDOM % 3 )) && ver[$n]=${rev[$n]}
  if (( RANDOM % 2 )); then edited_yaml "$n" "${ver[$n]}" "${rev[$n]}" | write_atomic "$f"
  else edited_yaml "$n" "${ver[$n]}" "${rev[$n]}" | write_inplace "$f"; fi
  good_ver[$n]=${ver[$n]}; good_rev[$n]=${rev[$n]}
  edits=$(( edits + 1 ))
}
burst() {
  bursts=$(( bursts + 1 ))
  local picks n k f
  picks=$(for i in $(seq 1 12); do echo "e$i"; done | shuf -n 6 --random-source=<(yes "$RANDOM"))
  for n in $picks; do
    f=$work/manifests/$n.yaml; k=$(( RANDOM % 4 ))
    if (( RANDOM % 2 )); then broken_yaml "$n" "$k" | write_atomic "$f"; else broken_yaml "$n" "$k" | write_inplace "$f"; fi
    broken_writes=$(( broken_writes + 1 ))
    sleep "0.$(( RANDOM % 8 + 2 ))"
    (( RANDOM % 10 < 7 )) && edit_one "$n"
  done
  # a broken file of its own, and an extra container that lives until the next burst
  if [ -f "$work/manifests/junk.yaml" ]; then rm -f "$work/manifests/junk.yaml"
  else printf 'apiVersion: agent/v1\nkind: Container\nmetadata: {name: junk}\nspec: {image: busybox, restart: {policy: often}}\n' | write_atomic "$work/manifests/junk.yaml"; fi
  if [ -n "$burst_extra" ]; then rm -f "$work/manifests/$burst_extra.yaml"; burst_extra=""
  else burst_extra=b$bursts; container "$burst_extra" always "$TERM_OK" | write_atomic "$work/manifests/$burst_extra.yaml"; fi
  say "burst $bursts: $(echo $picks) (broken first; junk.yaml $([ -f "$work/manifests/junk.yaml" ] && echo present || echo removed); extra ${burst_extra:-none})"
}
kill_a_monitor() {
  local name id m
  name=s$(( RANDOM % 9 + 1 ))
  id=$(A ps -o json 2>/dev/null | python3 -c 'import json,sys
for r in json.load(sys.stdin):
    if r["name"] == sys.argv[1]: print(r["id"])' "$name" 2>/dev/null || true)
  [ -n "$id" ] || return 0
  for m in $(monitor_pids); do
    if tr '\0' ' ' < /proc/"$m"/cmdline 2>/dev/null | grep -q -- " $id"; then
      kill -KILL "$m" 2>/dev/null && monitor_kills=$(( monitor_kills + 1 )) && say "monitor of $name ($m) SIGKILLed"
    fi
  done
}
check_port() {
  if curl -s -m 3 "http://127.0.0.1:$hport/" 2>/dev/null | grep -q soak; then port_ok=$(( port_ok + 1 ))
  else port_fail=$(( port_fail + 1 )); fi
}
remember_ids() {
  local id
  for id in $(A ps -o json 2>/dev/null | python3 -c 'import json,sys
for r in json.load(sys.stdin): print(r["id"])' 2>/dev/null); do ids_seen[$id]=1; done
}

# ------------------------------------------------------------------ convergence and leaks --------
convergence() { # prints the problems; empty when converged
  A ps -o json 2>/dev/null > "$work/ps.json" || { echo "agent ps failed"; return 0; }
  local marks=""
  local n
  for n in $(seq 1 12); do marks+="e$n=$(cat "$work/marks/e$n" 2>/dev/null || echo none) "; done
  python3 - "$work/ps.json" "$marks" "$(for n in "${!good_rev[@]}"; do echo -n "$n=${good_ver[$n]}:${good_rev[$n]} "; done)" "$burst_extra" "$(cat "$work/marks/cli" 2>/dev/null)" "$(monitor_pids | wc -l)" <<'PY'
import json, sys
rows = {r["name"]: r for r in json.load(open(sys.argv[1]))}
running = sum(1 for r in rows.values() if r.get("state") == "running")
monitors = int(sys.argv[6])
marks = dict(x.split("=", 1) for x in sys.argv[2].split())
want = {k: v.split(":") for k, v in (x.split("=") for x in sys.argv[3].split())}
extra, cli = sys.argv[4], sys.argv[5].strip()
bad = []
def state(n):
    r = rows.get(n)
    return (r or {}).get("state", "absent")
for n, (v, rv) in sorted(want.items()):
    r = rows.get(n)
    if state(n) != "running": bad.append("%s: %s, want running" % (n, state(n)))
    elif (r.get("labels") or {}).get("rev") != rv: bad.append("%s: label rev %s, want %s" % (n, (r.get("labels") or {}).get("rev"), rv))
    elif marks.get(n) != v: bad.append("%s: runs VER %s, want %s" % (n, marks.get(n), v))
for i in range(1, 10):
    n = "s%d" % i
    if state(n) != "running" or rows[n].get("health") != "healthy":
        bad.append("%s: %s %s, want running healthy" % (n, state(n), rows.get(n, {}).get("health")))
for i in range(1, 4):
    n = "o%d" % i
    r = rows.get(n, {})
    if state(n) != "exited" or r.get("restarts") != 3 or r.get("exit_code") != 3:
        bad.append("%s: %s after %s restarts, exit code %s; want exited after 3, exit code 3" % (n, state(n), r.get("restarts"), r.get("exit_code")))
for n in ("c1", "c2", "c3", "c4"):
    if n not in rows: bad.append("%s: absent" % n)
for n in ("srv", "cli"):
    if state(n) != "running": bad.append("%s: %s, want running" % (n, state(n)))
if cli != "ok": bad.append("cli: its last fetch of http://web/ said %r" % cli)
if "junk" in rows: bad.append("junk (a broken file) has a container")
if monitors < running: bad.append("%d monitor processes for %d running containers" % (monitors, running))
known = set(want) | {"s%d" % i for i in range(1, 10)} | {"o1", "o2", "o3", "c1", "c2", "c3", "c4", "srv", "cli"} | ({extra} if extra else set())
for n in sorted(set(rows) - known): bad.append("%s: listed, not in any valid file" % n)
if extra and state(extra) != "running": bad.append("%s: %s, want running" % (extra, state(extra)))
print("\n".join(bad))
PY
}
leaks() { # after the agent removed everything and exited: what is left on the host
  local l id d
  l=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep "^$vprefix" || true)
  [ -n "$l" ] && echo "veths: $(echo $l)"
  l=$(ls /run/netns 2>/dev/null | grep "^$inst-" || true)
  [ -n "$l" ] && echo "namespaces: $(echo $l)"
  l=$(grep -c " $work" /proc/mounts || true)
  [ "$l" != 0 ] && echo "mounts under $work: $l"
  # The network's own rules (masquerade, forwarding for the bridge) stay until `agent system
  # reset`; a rule naming the published port or a container's address is a leak.
  l=$( { nft list table ip "$inst" 2>/dev/null; iptables-save 2>/dev/null | grep -i -- "$inst"; } \
    | python3 -c 'import re, sys
net, port = sys.argv[1].rsplit(".", 1)[0], sys.argv[2]
for line in sys.stdin:
    t = line.strip()
    if re.search(r"(^|\D)%s(\D|$)" % port, t) or any(
            int(m) not in (0, 1, 255) for m in re.findall(re.escape(net) + r"\.(\d+)(?![\d/])", t)):
        print(t)' "$subnet" "$hport")
  [ -n "$l" ] && echo "firewall rules naming the published port or a container address: $(echo "$l" | wc -l): $(echo "$l" | head -3 | tr '\n' ' ')"
  for id in "${!ids_seen[@]}"; do
    for d in /sys/fs/cgroup/*/agent/"$id" /sys/fs/cgroup/agent/"$id"; do
      [ -d "$d" ] && echo "cgroup: $d"
    done
  done
  l=$(monitor_pids)
  [ -n "$l" ] && echo "monitors alive: $(echo $l)"
  l=$(ls "$work/state/exec" 2>/dev/null | wc -l)
  [ "$l" != 0 ] && echo "exec dirs left: $l"
  return 0
}

teardown() { # through the agent: every manifest removed, then SIGTERM
  [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null || agent_start || return 1
  rm -f "$work"/manifests/*.yaml
  timeout 180 "$BIN" apply --socket "$work/agent.sock" --state-dir "$work/state" >/dev/null 2>&1 \
    || say "tear-down: agent apply with no manifests did not succeed within 180 s"
  local i
  for i in $(seq 1 120); do
    [ "$(A ps -o json 2>/dev/null | grep -c '"name"' || true)" = 0 ] && break
    sleep 1
  done
  kill -TERM "$agent_pid" 2>/dev/null || true
  for i in $(seq 1 300); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$agent_pid" 2>/dev/null && { say "the agent still ran 30 s after SIGTERM: SIGKILL"; kill -KILL "$agent_pid"; }
  wait "$agent_pid" 2>/dev/null || true
  agent_pid=""
  torn_down=1
}

stop_helpers() {
  local p
  for p in $sampler_pid $follower_pid; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $sampler_pid $follower_pid; do wait "$p" 2>/dev/null || true; done
  sampler_pid=""; follower_pid=""
}

cleanup() {
  set +e
  [ -n "$cleaned" ] && return 0
  cleaned=1
  stop_helpers
  if [ -d "$work/state" ] && [ -z "$torn_down" ]; then
    say "cleanup: removing every container through the agent"
    teardown
  fi
  kill_leftovers
  "$BIN" system reset --state-dir "$work/state" --socket "$work/agent.sock" --config "$work/config.toml" \
    >>"$LOG" 2>&1 || say "cleanup: agent system reset failed (see $LOG)"
  ip link del "$bridge" 2>/dev/null
  nft delete table ip "$inst" 2>/dev/null
  grep " $work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  [ -z "${KEEP_WORK:-}" ] && rm -rf "$work"
  say "cleanup done; results in $OUT"
}

# ------------------------------------------------------------------ main -------------------------
rm -rf "$work"
mkdir -p -m 755 "$work" "$work/manifests" "$work/stage"
mkdir -p -m 777 "$work/marks"
trap cleanup EXIT
trap 'exit 130' INT TERM
cat > "$work/config.toml" <<CONF
$([ -n "${EVENT_CAP:-}" ] && echo "event_cap = $EVENT_CAP")
[network]
bridge = "$bridge"
subnet = "$subnet"
instance = "$inst"
veth_prefix = "$vprefix"
[log]
level = "info"
format = "json"
CONF
say "soak: $(date -u '+%Y-%m-%d %H:%M UTC'), $("$BIN" --version 2>/dev/null), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
say "DURATION=${DURATION_S}s KILL_EVERY=${KILL_S}s BURST_EVERY=${BURST_S}s MONITOR_KILL_EVERY=${MONKILL_S}s EDIT=${EDIT_MIN}-${EDIT_MAX}s SAMPLE_EVERY=${SAMPLE_EVERY}s WARMUP=${WARMUP_S}s EVENT_CAP=${EVENT_CAP:-default} AGENT_ENV=${AGENT_ENV:-} seed=${SEED:-$$}; instance $inst, subnet $subnet, port 127.0.0.1:$hport; out $OUT"
write_manifests
t0=$EPOCHSECONDS
echo "$t0" > "$work/t0"
agent_start
python3 bench/soak_sample.py follow "$work" "$BIN" "$work/events.stats" &
follower_pid=$!
python3 bench/soak_sample.py sample "$work" "$OUT/samples.csv" "$SAMPLE_EVERY" "$BIN" "$inst" "$vprefix" &
sampler_pid=$!

end=$(( t0 + DURATION_S ))
declare -A due=()
for i in $(seq 1 12); do due[e$i]=$(( t0 + 60 + EDIT_MIN + RANDOM % (EDIT_MAX - EDIT_MIN + 1) )); done
next_kill=$(( KILL_S > 0 ? t0 + KILL_S : end + 1 ))
next_burst=$(( t0 + BURST_S ))
next_monkill=$(( MONKILL_S > 0 ? t0 + MONKILL_S : end + 1 ))
next_port=$(( t0 + 30 ))
next_note=$(( t0 + 600 ))
while [ "$EPOCHSECONDS" -lt "$end" ]; do
  now=$EPOCHSECONDS
  for n in "${!due[@]}"; do
    if [ "$now" -ge "${due[$n]}" ]; then
      edit_one "$n"
      due[$n]=$(( now + EDIT_MIN + RANDOM % (EDIT_MAX - EDIT_MIN + 1) ))
    fi
  done
  if [ "$now" -ge "$next_burst" ]; then burst; next_burst=$(( now + BURST_S )); fi
  if [ "$now" -ge "$next_kill" ]; then
    agent_kill9; agent_kills=$(( agent_kills + 1 ))
    sleep "$(( RANDOM % 4 )).$(( RANDOM % 10 ))"
    t1=${EPOCHREALTIME/./}
    agent_start || { say "the agent did not come back after kill $agent_kills"; exit 1; }
    say "agent kill $agent_kills: SIGKILL, answering again $(( (${EPOCHREALTIME/./} - t1) / 1000 )) ms after its start"
    remember_ids
    next_kill=$(( EPOCHSECONDS + KILL_S ))
  fi
  if [ "$now" -ge "$next_monkill" ]; then kill_a_monitor; next_monkill=$(( now + MONKILL_S )); fi
  if [ "$now" -ge "$next_port" ]; then check_port; remember_ids; next_port=$(( now + 30 )); fi
  if [ "$now" -ge "$next_note" ]; then
    say "$(( (now - t0) / 60 )) min: $edits edits, $broken_writes broken writes, $bursts bursts, $agent_kills agent kills, $monitor_kills monitor kills, port $port_ok ok / $port_fail failed; last sample: $(tail -1 "$OUT/samples.csv")"
    next_note=$(( now + 600 ))
  fi
  kill -0 "$agent_pid" 2>/dev/null || { say "the agent died on its own: $(tail -3 "$OUT/agent.log")"; agent_start; }
  sleep 1
done

say "faults stop after $(( (EPOCHSECONDS - t0) / 60 )) min: $edits edits, $broken_writes broken writes, $bursts bursts, $agent_kills agent kills, $monitor_kills monitor kills; published port $port_ok ok / $port_fail failed"
# Files left broken by the last burst stay broken: their last valid content must be what runs.
timeout 180 "$BIN" apply --socket "$work/agent.sock" --state-dir "$work/state" >/dev/null 2>&1 || true
problems=""
for i in $(seq 1 36); do
  problems=$(convergence)
  [ -z "$problems" ] && break
  sleep 5
done
remember_ids
check_port
stop_helpers
{
  echo "# soak run $(basename "$OUT")"
  echo
  echo "$(head -2 "$LOG" | cut -d' ' -f2- | sed 's/^/- /')"
  echo "- ran $(( (EPOCHSECONDS - t0) / 60 )) min: $edits edits, $broken_writes broken writes in $bursts bursts, $agent_kills agent SIGKILLs, $monitor_kills monitor SIGKILLs; published port fetched $port_ok times ok, $port_fail failed"
  echo "- events followed: $(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%d events, %d ids missing, %d duplicates skipped, %d reconnects" % (s["events"], s["gaps"], s["dups"], s["reconnects"]))' "$work/events.stats" 2>/dev/null || echo unknown)"
  if [ -z "$problems" ]; then echo "- convergence: every file at its last valid content runs as expected"
  else echo "- convergence: NOT converged after 3 min:"; echo "$problems" | sed 's/^/  - /'; fi
} > "$OUT/summary.md"
say "tear-down through the agent"
teardown
sleep 2
lk=$(leaks)
if [ -z "$lk" ]; then echo "- leaks after tear-down (${#ids_seen[@]} container ids seen): none" >> "$OUT/summary.md"
else { echo "- leaks after tear-down (${#ids_seen[@]} container ids seen):"; echo "$lk" | sed 's/^/  - /'; } >> "$OUT/summary.md"; fi
{ echo; echo "## Growth"; echo; python3 bench/soak_sample.py report "$OUT/samples.csv" "$OUT/soak" "$WARMUP_S"; } >> "$OUT/summary.md"
cat "$OUT/summary.md"
[ -z "$problems" ] && [ -z "$lk" ]
