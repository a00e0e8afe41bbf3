#!/usr/bin/env bash
# Reconcile-core benchmark (issue 14, "Figures to reach"): what an operator sees of the loop, with
# busybox `sleep` containers, driven through manifest files and the CLI only. Prints a table of
# medians and writes bench/results/core.tsv (every sample) and bench/results/core.md (the table).
#
#   bench/core.sh                  the agent's scenarios, then the same with docker compose and
#                                  podman `kube play` where installed (ENGINES=agent,compose,podman)
#   ENGINES=agent bench/core.sh    the agent only
#   bench/core.sh install          installs docker.io docker-compose podman catatonit (not in
#                                  scripts/apt/*.list on purpose: CI runs scripts/setup.sh and
#                                  must not install or start a container engine)
#   REPORT_ONLY=1 bench/core.sh    rebuild core.md from core.tsv
#
# Knobs: ROUNDS (5: fast scenarios), SLOW_ROUNDS (5: up/tear-down of 10 and 50, which wait out a
# 10 s grace each), IDLE_SECONDS (60), NETWORK_MODE (bridge: the agent's default network, compose's
# project network, a podman CNI network; or none), AGENT_BIN (default: the release build).
#
# Scenarios (all times from the operator's action to the effect, clocked by this script):
#   up N          N manifest files renamed into the directory at once (compose: `up -d` of N
#                 services; podman: `kube play` of N one-container pods) until every container's
#                 process has touched its marker in a bind-mounted host directory.
#   tear-down N   the N files removed at once (compose `down`, podman `kube down`) until none is
#                 listed; PID 1 is `sleep`, which ignores SIGTERM, and the grace period is the
#                 default 10 s, so each container is SIGKILLed after 10 s.
#   drop during   200 ms after the N files are removed, one new manifest is dropped: until it runs.
#   ps during stop `agent ps` latency (CLI process start to exit) while `agent stop -t 25` waits
#                 out the grace of a container that ignores SIGTERM.
#   no-op apply   `agent apply` with 50 running and nothing changed (compose: `up -d` again).
#   comment edit  a comment changed in one of the 50 files (atomic rename) until the agent's pass
#                 for it is done (the pass's end time from the agent's JSON log).
#   restart       a `restart: always` container's PID 1 SIGKILLed from outside until its process
#                 runs again (its marker reappears); once idle, once while an Image pulls from a
#                 registry on 127.0.0.1 that sends 1 byte a second. restart.reset_after is 2 s here
#                 (default 10 s) so that every round starts from the first backoff step (100 ms).
#   idle          50 running, no health checks: voluntary context switches of the agent process
#                 (all its threads, /proc/<pid>/task/*/status) per second over IDLE_SECONDS.
#
# Host hygiene (other people use this host): dockerd is started only for the compose part, with its
# own data root and sockets and with --iptables=false --ip-forward=false --bridge=none, so it
# neither sets the FORWARD policy nor loads br_netfilter; after it stops the FORWARD policy, the
# bridge sysctls and ip_forward are put back as they were before it started, and leftovers (DOCKER
# chains, docker0, compose bridges) removed. Podman runs with its own --root/--runroot, its own CNI
# network (removed after, with its bridge and CNI firewall chains). Traffic: only 127.0.0.1 (the
# slow registry) and the containers' own networks.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
ROUNDS=${ROUNDS:-5}
SLOW_ROUNDS=${SLOW_ROUNDS:-5}
IDLE_SECONDS=${IDLE_SECONDS:-60}
NETWORK_MODE=${NETWORK_MODE:-bridge}
ENGINES=${ENGINES:-agent,compose,podman}
COUNTS=${COUNTS:-10 50}
MAXN=${COUNTS##* }
IMAGE_TAR=/var/lib/agent-test-images/docker.tar
IMAGE_NAME=agent-test/busybox:latest
TSV=$out/core.tsv
LOG=$out/core.txt
[ "$(id -u)" = 0 ] || { echo "core: needs root" >&2; exit 1; }
case "$NETWORK_MODE" in none|bridge) ;; *) echo "NETWORK_MODE must be none or bridge" >&2; exit 2 ;; esac

if [ "${1:-}" = install ]; then
  # policy-rc.d keeps the packages' maintainer scripts from starting dockerd (FORWARD DROP).
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends docker.io docker-compose podman catatonit python3
  exit 0
fi

has() { case ",$ENGINES," in *",$1,"*) return 0 ;; esac; return 1; }
say() { echo "$*" | tee -a "$LOG" >&2; }
now_us() { echo "${EPOCHREALTIME/./}"; }

# record METRIC ENGINE UNIT VALUE... : one row of samples (microseconds for times, as given else).
record() {
  local m=$1 e=$2 u=$3; shift 3
  [ $# -gt 0 ] || { say "  $m/$e: no sample"; return 0; }
  # Replace an older row of the same metric and engine.
  if [ -f "$TSV" ]; then
    awk -F'\t' -v m="$m" -v e="$e" '!($1 == m && $2 == e)' "$TSV" > "$TSV.new" && mv "$TSV.new" "$TSV"
  fi
  printf '%s\t%s\t%s\t%s\n' "$m" "$e" "$u" "$(IFS=,; echo "$*")" >> "$TSV"
  say "  $m [$e]: $(summary "$u" "$@")"
}
# median/min/max of the samples, in ms for times
summary() {
  local u=$1; shift
  printf '%s\n' "$@" | sort -g | awk -v u="$u" '
    { v[NR] = $1 }
    END { f = (u == "us") ? 1000 : 1; med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          unit = (u == "us") ? "ms" : u
          printf "median %.1f %s (min %.1f, max %.1f, n=%d)", med / f, unit, v[1] / f, v[NR] / f, NR }'
}

# wait_count DIR N TIMEOUT_S: until DIR holds at least N entries; 1 on timeout.
wait_count() {
  local dir=$1 want=$2 deadline=$(( $(now_us) + $3 * 1000000 )) f
  shopt -s nullglob
  while :; do
    f=("$dir"/*)
    [ "${#f[@]}" -ge "$want" ] && { shopt -u nullglob; return 0; }
    [ "${EPOCHREALTIME/./}" -gt "$deadline" ] && { shopt -u nullglob; return 1; }
    sleep 0.002
  done
}

u=$$
subnet_b=$(( u / 50 % 250 ))
bench_tmp=""

# ================================================================== the agent ======================
BIN=${AGENT_BIN:-}
agent_pid=""
work=""
A() { "$BIN" "$@" --socket "$work/agent.sock" --state-dir "$work/state"; }
agent_bridge="agc$((u % 100000))"
agent_inst="agc$((u % 100000))"

agent_start() {
  work=$bench_tmp/agent
  mkdir -p -m 755 "$work" "$work/manifests" "$work/stage"
  cat > "$work/config.toml" <<CONF
stop_containers_on_exit = true
[restart]
reset_after = "2s"
[network]
bridge = "$agent_bridge"
subnet = "10.$((200 + u % 50)).$subnet_b.0/24"
instance = "$agent_inst"
veth_prefix = "ac$((u % 10000))"
[registries]
insecure = ["127.0.0.1:$reg_port"]
[log]
level = "${AGENT_LOG_LEVEL:-info,agent::reconcile::engine=debug}"
format = "json"
CONF
  cat > "$work/manifests/image.yaml" <<Y
apiVersion: agent/v1
kind: Image
metadata:
  name: busybox
spec:
  dockerArchive:
    path: $IMAGE_TAR
Y
  chmod 644 "$work"/manifests/*.yaml
  "$BIN" run --manifests "$work/manifests" --state-dir "$work/state" --socket "$work/agent.sock" \
    --config "$work/config.toml" 2>"$work/agent.log" &
  agent_pid=$!
  local i
  for i in $(seq 1 300); do
    [ -S "$work/agent.sock" ] && A ps >/dev/null 2>&1 && return 0
    kill -0 "$agent_pid" 2>/dev/null || { tail -20 "$work/agent.log" >&2; return 1; }
    sleep 0.1
  done
  echo "the agent did not answer on its socket" >&2; return 1
}

agent_stop() {
  [ -n "$agent_pid" ] || return 0
  if kill -0 "$agent_pid" 2>/dev/null; then
    slow_registry_stop
    rm -f "$work"/manifests/*.yaml
    timeout 120 "$BIN" apply --socket "$work/agent.sock" --state-dir "$work/state" >/dev/null 2>&1 \
      || say "agent stop: \`agent apply\` with no manifests did not finish within 120 s"
    kill -TERM "$agent_pid"
    local i
    for i in $(seq 1 300); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$agent_pid" 2>/dev/null && { say "agent stop: still running 30 s after SIGTERM: SIGKILL"; kill -KILL "$agent_pid"; }
    wait "$agent_pid" 2>/dev/null || true
  fi
  agent_pid=""
  kill_leftovers "$work"
  # Bridges, the firewall table and the host accept rules in FORWARD / DOCKER-USER (the manual
  # removals below are the fallback for a state the reset refuses).
  "$BIN" system reset --state-dir "$work/state" --socket "$work/agent.sock" \
    --config "$work/config.toml" >/dev/null 2>&1 || say "agent stop: agent system reset failed"
  ip link del "$agent_bridge" 2>/dev/null || true
  nft delete table ip "$agent_inst" 2>/dev/null || true
  grep " $work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# agent_container NAME MARKS WORKLOAD(ignore|term) [extra spec lines]
agent_container() {
  local name=$1 marks=$2 cmd
  if [ "$3" = ignore ]; then
    cmd="touch /m/$name; exec sleep 1000000"
  else
    cmd="touch /m/$name; trap 'exit 0' TERM; sleep 1000000 & wait"
  fi
  cat <<Y
# bench container $name
apiVersion: agent/v1
kind: Container
metadata:
  name: $name
spec:
  image: busybox
  command: ["/bin/sh", "-c", "$cmd"]
  networkMode: $NETWORK_MODE
  volumes:
    - {bind: $marks, target: /m}
  restart: always
Y
}

# drop FILE...: moves staged files (in $work/stage) into the manifest directory at once.
drop() { (cd "$work/stage" && chmod 644 "$@" && mv "$@" "$work/manifests/"); }

# the names `agent ps` lists with PREFIX
ps_count() { A ps -o json 2>/dev/null | grep -c "\"name\": \"$1" || true; }
# wait_gone PREFIX TIMEOUT_S
wait_gone() {
  local deadline=$(( $(now_us) + $2 * 1000000 ))
  while [ "$(ps_count "$1")" -gt 0 ]; do
    [ "$(now_us)" -gt "$deadline" ] && return 1
    sleep 0.02
  done
}
wait_running() { # PREFIX N TIMEOUT_S: until `agent ps` lists at least N running with PREFIX
  local deadline=$(( $(now_us) + $3 * 1000000 ))
  while [ "$(A ps -o json 2>/dev/null | python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
except ValueError:
    v = []
print(sum(1 for r in v if r.get("name", "").startswith(sys.argv[1]) and r.get("state") == "running"))' "$1")" -lt "$2" ]; do
    [ "$(now_us)" -gt "$deadline" ] && return 1
    sleep 0.05
  done
}

agent_pass_end() { # the end (epoch µs) of the first pass that finished after epoch µs $1, from the log
  python3 - "$work/agent.log" "$1" <<'PY'
import json, sys, datetime
after = int(sys.argv[2])
for line in open(sys.argv[1], errors="replace"):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    msg = (r.get("fields") or {}).get("message", "") or r.get("message", "")
    if "pass" not in msg or not any(w in msg for w in ("done", "finished", "applied", "complete")):
        continue
    ts = r.get("timestamp")
    try:
        t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except Exception:
        continue
    us = int(t.timestamp() * 1_000_000)
    if us > after:
        print(us)
        break
PY
}

# -- the slow registry: answers every request with a response trickled at 1 byte a second --------
reg_pid=""
reg_port=0
slow_registry_start() {
  reg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  python3 - "$reg_port" "$bench_tmp/registry.log" <<'PY' &
import socket, sys, threading, time
port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(16); srv.settimeout(1)
end = time.time() + 900  # bounded: stops by itself after 15 minutes
body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}' * 100
resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
def serve(c):
    try:
        c.settimeout(5)
        req = c.recv(4096).split(b"\r\n")[0]
        log.write("%.3f request %s\n" % (time.time(), req.decode(errors="replace")))
        for b in resp:
            if time.time() > end:
                break
            c.sendall(bytes([b])); time.sleep(1)
    except OSError as e:
        log.write("%.3f connection ended: %s\n" % (time.time(), e))
    finally:
        c.close()
while time.time() < end:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
  reg_pid=$!
}
slow_registry_stop() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; wait "$reg_pid" 2>/dev/null || true; reg_pid=""; }

# ctxt_total PID: voluntary context switches summed over its threads; tracks threads that exited
# since the last call (their last seen count stays in the sum).
declare -A ctxt_seen=() ctxt_first=()
ctxt_sample() {
  local pid=$1 t v
  for t in /proc/"$pid"/task/*; do
    v=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null) || continue
    [ -n "$v" ] && ctxt_seen[${t##*/}]=$v
  done
}
ctxt_sum() { local s=0 k; for k in "${!ctxt_seen[@]}"; do s=$(( s + ctxt_seen[$k] )); done; echo $s; }

container_pid() { # host pid of a container's PID 1: the child (NSpid 1) of its monitor, or the
  # pid an adopting monitor waits for (`--wait-pid P`); the monitor is found by its command line.
  local p args c kid
  for p in /proc/[0-9]*; do
    args=$(tr '\0' ' ' 2>/dev/null < "$p/cmdline") || continue
    case "$args" in *"--state-dir $work/state "*" $1-"*) ;; *) continue ;; esac
    if [[ "$args" =~ --wait-pid\ ([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; return 0; fi
    for c in $(cat "$p"/task/*/children 2>/dev/null); do
      for kid in "$c" $(cat /proc/"$c"/task/*/children 2>/dev/null); do
        [ "$(awk '/^NSpid/ {print $NF}' "/proc/$kid/status" 2>/dev/null)" = 1 ] && { echo "$kid"; return 0; }
      done
    done
  done
}
# kill_leftovers DIR: SIGKILL the monitors whose --state-dir is under DIR and their containers'
# init processes (only what this script started, if its agent could not remove them).
kill_leftovers() {
  local p args
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = $$ ] && continue
    args=$(tr '\0' ' ' 2>/dev/null < "$p/cmdline") || continue
    case "$args" in *"--state-dir $1/"*) ;; *) continue ;; esac
    # a monitor: its container's init first (`--wait-pid P`), then the monitor
    [[ "$args" =~ --wait-pid\ ([0-9]+) ]] && kill -KILL "${BASH_REMATCH[1]}" 2>/dev/null
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}

bench_agent() {
  say "== agent ($("$BIN" --version 2>/dev/null || echo "$BIN"), $(git rev-parse --short HEAD), network mode $NETWORK_MODE)"
  slow_registry_start
  agent_start
  local marks=$work/marks r i t0 n name
  mkdir -p -m 777 "$marks"
  # warm-up: the image import and one container
  agent_container w "$marks" term > "$work/stage/w.yaml"; drop w.yaml
  wait_count "$marks" 1 300 || { say "warm-up container never ran"; tail -30 "$work/agent.log" >&2; return 1; }
  rm -f "$work/manifests/w.yaml"; wait_gone w 60 || true; rm -f "$marks"/*

  # -- up 1 ---------------------------------------------------------------------------------------
  local up1=()
  for r in $(seq 1 "$ROUNDS"); do
    agent_container u1 "$marks" term > "$work/stage/u1.yaml"
    t0=$(now_us); drop u1.yaml
    wait_count "$marks" 1 60 || { say "up 1: no marker after 60 s"; break; }
    up1+=($(( $(now_us) - t0 )))
    wait_running u1 1 30 || say "up 1: u1 not listed as running"
    rm -f "$work/manifests/u1.yaml"; wait_gone u1 60 || say "up 1: u1 still listed 60 s after removal"
    rm -f "$marks"/*
  done
  record up_1 agent us "${up1[@]}"

  # -- up N, (once at 50: no-op apply, comment edit, idle), tear-down N + a file dropped meanwhile -
  for n in $COUNTS; do
    local upn=() down=() dropped=() noop=() noop_pass=() edit=()
    for r in $(seq 1 "$SLOW_ROUNDS"); do
      rm -f "$marks"/*
      for i in $(seq 1 "$n"); do agent_container "t$i" "$marks" ignore > "$work/stage/t$i.yaml"; done
      t0=$(now_us)
      (cd "$work/stage" && chmod 644 t*.yaml && mv t*.yaml "$work/manifests/")
      if ! wait_count "$marks" "$n" 300; then
        say "up $n: only $(ls "$marks" | wc -l) of $n ran within 300 s"; tail -20 "$work/agent.log" >> "$LOG"; break
      fi
      upn+=($(( $(now_us) - t0 )))
      wait_running t "$n" 120 || say "up $n: not all listed as running"
      if [ "$n" = "$MAXN" ] && [ "$r" = 1 ]; then
        sleep 1
        for i in $(seq 1 "$ROUNDS"); do
          t0=$(now_us)
          local rep; rep=$(A apply -o json)
          noop+=($(( $(now_us) - t0 )))
          noop_pass+=("$(echo "$rep" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["finished_at"]-v["started_at"]) if "started_at" in v else print("")' 2>/dev/null || true)")
          echo "$rep" | grep -q '"applied": \[\]' || echo "$rep" | python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit(0 if not v.get("applied") else 1)' \
            || say "no-op apply applied changes: $(echo "$rep" | head -c 400)"
        done
        for i in $(seq 1 "$ROUNDS"); do
          sleep 0.5
          { echo "# edit $i"; agent_container t1 "$marks" ignore; } > "$work/stage/t1.yaml"
          t0=$(now_us); drop t1.yaml
          local end=""
          for _ in $(seq 1 100); do
            sleep 0.05; end=$(agent_pass_end "$t0"); [ -n "$end" ] && break
          done
          if [ -n "$end" ]; then edit+=($(( end - t0 ))); else say "comment edit $i: no pass end in the agent's log within 5 s"; fi
        done
        # idle
        sleep 3
        ctxt_seen=(); ctxt_sample "$agent_pid"; local c0; c0=$(ctxt_sum)
        ctxt_first=(); for tid in "${!ctxt_seen[@]}"; do ctxt_first[$tid]=${ctxt_seen[$tid]}; done
        local main0; main0=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$agent_pid/status")
        t0=$(now_us)
        for _ in $(seq 1 "$IDLE_SECONDS"); do sleep 1; ctxt_sample "$agent_pid"; done
        local c1 main1 el; c1=$(ctxt_sum); el=$(( $(now_us) - t0 ))
        main1=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$agent_pid/status")
        local threads; threads=$(ls "/proc/$agent_pid/task" | wc -l)
        record idle_wakeups_per_s_50 agent "/s" "$(awk -v c=$(( c1 - c0 )) -v e="$el" 'BEGIN {printf "%.2f", c / (e / 1e6)}')"
        record idle_wakeups_main_thread_per_s_50 agent "/s" "$(awk -v c=$(( main1 - main0 )) -v e="$el" 'BEGIN {printf "%.2f", c / (e / 1e6)}')"
        local tid; for tid in "${!ctxt_seen[@]}"; do
          [ "$(( ctxt_seen[$tid] - ${ctxt_first[$tid]:-0} ))" -gt 0 ] && say "    thread $tid ($(cat "/proc/$agent_pid/task/$tid/comm" 2>/dev/null || echo gone)): $(( ctxt_seen[$tid] - ${ctxt_first[$tid]:-0} )) switches"
        done
        say "  idle: $(( c1 - c0 )) voluntary switches in $(( el / 1000000 )) s over ${#ctxt_seen[@]} threads seen ($threads now); main thread $(( main1 - main0 ))"
      fi
      # tear-down, and one file dropped 200 ms after
      rm -f "$marks"/d1
      agent_container d1 "$marks" term > "$work/stage/d1.yaml"
      t0=$(now_us)
      rm -f "$work"/manifests/t*.yaml
      sleep 0.2
      local td=$(now_us); drop d1.yaml
      local got_d=""
      local deadline=$(( t0 + 300 * 1000000 )) gone=""
      while :; do
        [ -z "$got_d" ] && [ -e "$marks/d1" ] && { got_d=$(( $(now_us) - td )); dropped+=("$got_d"); }
        if [ -z "$gone" ] && [ "$(ps_count t)" = 0 ]; then gone=$(( $(now_us) - t0 )); down+=("$gone"); fi
        [ -n "$gone" ] && [ -n "$got_d" ] && break
        [ "$(now_us)" -gt "$deadline" ] && { say "tear-down $n: not done after 300 s (gone=$gone dropped=$got_d)"; break; }
        sleep 0.01
      done
      say "  round $r: up $n $(( ${upn[-1]:-0} / 1000 )) ms, tear-down $(( ${gone:-0} / 1000 )) ms, dropped file running after $(( ${got_d:-0} / 1000 )) ms"
      rm -f "$work/manifests/d1.yaml"; wait_gone d1 60 || true
    done
    record "up_$n" agent us "${upn[@]}"
    record "teardown_$n" agent us "${down[@]}"
    record "drop_during_teardown_$n" agent us "${dropped[@]}"
    if [ "$n" = "$MAXN" ]; then
      record noop_apply_50 agent us "${noop[@]}"
      local np=(); for i in "${noop_pass[@]}"; do [ -n "$i" ] && np+=("$i"); done
      [ "${#np[@]}" -gt 0 ] && record noop_pass_50 agent ms "${np[@]}"
      record comment_edit_pass_50 agent us "${edit[@]}"
    fi
  done
  rm -f "$marks"/*

  # -- agent ps during `agent stop -t 25` ---------------------------------------------------------
  agent_container p1 "$marks" ignore > "$work/stage/p1.yaml"; drop p1.yaml
  wait_count "$marks" 1 60; wait_running p1 1 30 || say "p1 not listed as running"
  t0=$(now_us)
  A stop -t 25 p1 > "$work/stop.out" 2>&1 &
  local stop_pid=$! psl=()
  sleep 0.5
  while kill -0 "$stop_pid" 2>/dev/null && [ $(( $(now_us) - t0 )) -lt 24000000 ]; do
    local p0; p0=$(now_us); A ps > /dev/null 2>&1; psl+=($(( $(now_us) - p0 ))); sleep 0.2
  done
  wait "$stop_pid" || say "agent stop -t 25 failed: $(cat "$work/stop.out")"
  say "  agent stop -t 25 took $(( ($(now_us) - t0) / 1000 )) ms"
  record ps_during_stop agent us "${psl[@]}"
  rm -f "$work/manifests/p1.yaml"; wait_gone p1 60 || true; rm -f "$marks"/*

  # -- restart: always, killed from outside -------------------------------------------------------
  agent_container r1 "$marks" term > "$work/stage/r1.yaml"; drop r1.yaml
  wait_count "$marks" 1 60; wait_running r1 1 30 || say "r1 not listed as running"
  for phase in idle pull; do
    if [ "$phase" = pull ]; then
      cat > "$work/stage/slow.yaml" <<Y
apiVersion: agent/v1
kind: Image
metadata:
  name: slow
spec:
  registry:
    reference: 127.0.0.1:$reg_port/bench/slow:latest
    insecure: true
Y
      drop slow.yaml
      sleep 2
      grep -q request "$bench_tmp/registry.log" 2>/dev/null || say "  (the slow registry has had no request yet)"
    fi
    local rs=()
    for r in $(seq 1 "$ROUNDS"); do
      sleep 2.5 # > restart.reset_after: the next exit starts from the first backoff step
      local pid; pid=$(container_pid r1)
      [ -n "$pid" ] || { say "restart: no pid for r1 in agent inspect"; break; }
      rm -f "$marks/r1"
      t0=$(now_us); kill -KILL "$pid"
      if wait_count "$marks" 1 60; then rs+=($(( $(now_us) - t0 ))); else say "restart ($phase): r1 not running 60 s after kill"; fi
    done
    record "restart_$phase" agent us "${rs[@]}"
  done
  say "  slow registry: $(grep -c request "$bench_tmp/registry.log" 2>/dev/null || echo 0) requests; agent status of slow: $(A status 2>&1 | grep -i slow | head -2 | tr '\n' ' ')"
  cp "$work/agent.log" "$out/core-agent.log" 2>/dev/null || true
  agent_stop
  slow_registry_stop
}

# ================================================================== docker compose ================
dockerd_pid=""
DH=unix:///run/bench-docker.sock
fw_before=""
fw_save() {
  fw_before="$(iptables -S FORWARD 2>/dev/null | head -1)|$(cat /proc/sys/net/ipv4/ip_forward)|$( [ -d /sys/module/br_netfilter ] && echo loaded || echo absent)"
  for s in bridge-nf-call-iptables bridge-nf-call-ip6tables; do
    fw_before+="|$(cat /proc/sys/net/bridge/$s 2>/dev/null || echo -)"
  done
}
fw_restore() {
  local pol ipf brnf s1 s2
  IFS='|' read -r pol ipf brnf s1 s2 <<< "$fw_before"
  case "$pol" in *ACCEPT*) iptables -P FORWARD ACCEPT ;; *DROP*) iptables -P FORWARD DROP ;; esac
  echo "$ipf" > /proc/sys/net/ipv4/ip_forward
  if [ -d /sys/module/br_netfilter ]; then
    [ "$s1" = - ] && s1=0; [ "$s2" = - ] && s2=0
    sysctl -qw net.bridge.bridge-nf-call-iptables="$s1" net.bridge.bridge-nf-call-ip6tables="$s2"
    [ "$brnf" = absent ] && say "  note: br_netfilter got loaded during the run; its sysctls are set back to $s1/$s2"
  fi
}

declare -A bridges_before=()
dockerd_start() {
  fw_save
  local l
  for l in $(ip -o link show type bridge | awk -F': ' '{print $2}'); do bridges_before[$l]=1; done
  mkdir -p /var/lib/bench-docker
  dockerd --data-root /var/lib/bench-docker --exec-root /run/bench-docker-exec -H "$DH" \
    --pidfile /run/bench-docker.pid --iptables=false --ip6tables=false --ip-forward=false \
    --ip-masq=false --bridge=none --userland-proxy=false --log-level=warn \
    > "$bench_tmp/dockerd.log" 2>&1 &
  dockerd_pid=$!
  local i
  for i in $(seq 1 120); do
    /usr/bin/docker -H "$DH" info >/dev/null 2>&1 && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -20 "$bench_tmp/dockerd.log" >&2; return 1; }
    sleep 0.5
  done
  return 1
}
dockerd_stop() {
  [ -n "$dockerd_pid" ] || return 0
  local ids; ids=$(/usr/bin/docker -H "$DH" ps -aq 2>/dev/null || true)
  [ -n "$ids" ] && /usr/bin/docker -H "$DH" rm -f $ids >/dev/null 2>&1
  /usr/bin/docker -H "$DH" network prune -f >/dev/null 2>&1 || true
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=""
  ip link del docker0 2>/dev/null || true
  local l
  for l in $(ip -o link show type bridge | awk -F': ' '{print $2}' | grep '^br-' || true); do
    [ -n "${bridges_before[$l]:-}" ] || ip link del "$l" 2>/dev/null || true
  done
  local c
  for c in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do
    iptables -t filter -F "$c" 2>/dev/null || true
  done
  iptables -t nat -F DOCKER 2>/dev/null || true
  fw_restore
}

compose_file() { # N WORKLOAD(ignore|term) MARKS
  local n=$1 i cmd
  echo "version: '2.4'"
  echo "services:"
  for i in $(seq 1 "$n"); do
    if [ "$2" = ignore ]; then cmd="touch /m/c$i; exec sleep 1000000"; else cmd="touch /m/c$i; trap 'exit 0' TERM; sleep 1000000 & wait"; fi
    cat <<Y
  c$i:
    image: $IMAGE_NAME
    command: ["/bin/sh", "-c", "$cmd"]
    volumes: ["$3:/m"]
    restart: always
Y
    [ "$NETWORK_MODE" = none ] && echo "    network_mode: none"
  done
  if [ "$NETWORK_MODE" = bridge ]; then
    cat <<Y
networks:
  default:
    ipam:
      config:
        - subnet: 10.$((200 + (u + 7) % 50)).$subnet_b.0/24
Y
  fi
}

bench_compose() {
  command -v docker-compose >/dev/null && command -v dockerd >/dev/null || { say "== compose: not installed (bench/core.sh install)"; return 0; }
  say "== docker compose ($(docker-compose version --short 2>/dev/null), dockerd $(dockerd --version | cut -d' ' -f3 | tr -d ,))"
  dockerd_start || { say "dockerd did not start"; dockerd_stop; return 1; }
  /usr/bin/docker -H "$DH" load -i "$IMAGE_TAR" >/dev/null || { say "docker load failed"; dockerd_stop; return 1; }
  local d=$bench_tmp/compose marks=$bench_tmp/compose/marks r t0 n
  mkdir -p "$d" "$marks"; chmod 777 "$marks"
  # compose's default HTTP timeout (60 s) is too short for 50 containers on a loaded 2-CPU host
  export DOCKER_HOST=$DH COMPOSE_PROJECT_NAME=bench$u COMPOSE_HTTP_TIMEOUT=600
  local DC=(docker-compose -f "$d/docker-compose.yml" --no-ansi)
  local up1=()
  compose_file 1 term "$marks" > "$d/docker-compose.yml"
  for r in $(seq 1 "$ROUNDS"); do
    rm -f "$marks"/*
    t0=$(now_us); "${DC[@]}" up -d >>"$d/compose.log" 2>&1 || say "compose up failed: $(tail -2 "$d/compose.log")"
    wait_count "$marks" 1 60 && up1+=($(( $(now_us) - t0 )))
    "${DC[@]}" down >>"$d/compose.log" 2>&1 || say "compose down failed: $(tail -2 "$d/compose.log")"
  done
  record up_1 compose us "${up1[@]}"
  for n in $COUNTS; do
    local upn=() down=() noop=()
    compose_file "$n" ignore "$marks" > "$d/docker-compose.yml"
    for r in $(seq 1 "$SLOW_ROUNDS"); do
      rm -f "$marks"/*
      t0=$(now_us); "${DC[@]}" up -d >>"$d/compose.log" 2>&1 || say "compose up failed: $(tail -2 "$d/compose.log")"
      wait_count "$marks" "$n" 300 && upn+=($(( $(now_us) - t0 )))
      if [ "$n" = "$MAXN" ] && [ "$r" = 1 ]; then
        for i in $(seq 1 "$ROUNDS"); do
          t0=$(now_us)
          if "${DC[@]}" up -d >>"$d/compose.log" 2>&1; then noop+=($(( $(now_us) - t0 ))); else say "compose up (no-op) failed: $(tail -2 "$d/compose.log")"; fi
        done
      fi
      t0=$(now_us)
      if "${DC[@]}" down >>"$d/compose.log" 2>&1; then down+=($(( $(now_us) - t0 ))); else say "compose down failed: $(tail -2 "$d/compose.log")"; fi
      say "  round $r: up $n $(( ${upn[-1]:-0} / 1000 )) ms, down $(( ${down[-1]} / 1000 )) ms"
    done
    record "up_$n" compose us "${upn[@]}"
    record "teardown_$n" compose us "${down[@]}"
    [ "$n" = "$MAXN" ] && record noop_apply_50 compose us "${noop[@]}"
  done
  "${DC[@]}" down >>"$d/compose.log" 2>&1 || true
  unset DOCKER_HOST COMPOSE_PROJECT_NAME COMPOSE_HTTP_TIMEOUT
  dockerd_stop
}

# ================================================================== podman kube play ==============
PM=(podman --root /var/lib/bench-podman --runroot /run/bench-podman --cgroup-manager cgroupfs --events-backend file)
pod_net=bench$u
kube_file() { # N WORKLOAD MARKS
  local i cmd
  for i in $(seq 1 "$1"); do
    if [ "$2" = ignore ]; then cmd="touch /m/k$i; exec sleep 1000000"; else cmd="touch /m/k$i; trap 'exit 0' TERM; sleep 1000000 & wait"; fi
    cat <<Y
---
apiVersion: v1
kind: Pod
metadata:
  name: k$i
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 10
  containers:
    - name: c
      image: localhost/$IMAGE_NAME
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "$cmd"]
      volumeMounts: [{name: m, mountPath: /m}]
  volumes:
    - name: m
      hostPath: {path: $3, type: Directory}
Y
  done
}
bench_podman() {
  command -v podman >/dev/null || { say "== podman: not installed (bench/core.sh install)"; return 0; }
  say "== podman kube play ($(podman --version | cut -d' ' -f3))"
  fw_save
  local d=$bench_tmp/podman marks=$bench_tmp/podman/marks r t0 n netopt
  mkdir -p "$d" "$marks"; chmod 777 "$marks"
  # Podman asks for RLIMIT_NOFILE and RLIMIT_NPROC 1048576; root without CAP_SYS_RESOURCE cannot
  # raise its hard limits (nproc 4096: podman's own hard limit here is below the shell's).
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n' "$(ulimit -Hn)" "$(ulimit -Hn)" > "$d/containers.conf"
  export CONTAINERS_CONF=$d/containers.conf
  "${PM[@]}" load -i "$IMAGE_TAR" >/dev/null 2>&1 || { say "podman load failed"; return 1; }
  "${PM[@]}" tag "$IMAGE_NAME" "localhost/$IMAGE_NAME" 2>/dev/null || true
  if [ "$NETWORK_MODE" = bridge ]; then
    "${PM[@]}" network rm -f "$pod_net" >/dev/null 2>&1 || true
    "${PM[@]}" network create --disable-dns --subnet "10.$((200 + (u + 13) % 50)).$subnet_b.0/24" "$pod_net" >/dev/null
    netopt=(--network "$pod_net")
  else
    netopt=(--network none)
  fi
  local up1=()
  kube_file 1 term "$marks" > "$d/k.yaml"
  for r in $(seq 1 "$ROUNDS"); do
    rm -f "$marks"/*
    t0=$(now_us); "${PM[@]}" kube play "${netopt[@]}" "$d/k.yaml" >>"$d/play.log" 2>&1 || say "kube play failed: $(tail -3 "$d/play.log")"
    wait_count "$marks" 1 60 && up1+=($(( $(now_us) - t0 )))
    "${PM[@]}" kube down "$d/k.yaml" >/dev/null 2>&1 || true
  done
  record up_1 podman us "${up1[@]}"
  for n in $COUNTS; do
    local upn=() down=()
    kube_file "$n" ignore "$marks" > "$d/k.yaml"
    for r in $(seq 1 "$SLOW_ROUNDS"); do
      rm -f "$marks"/*
      t0=$(now_us); "${PM[@]}" kube play "${netopt[@]}" "$d/k.yaml" >>"$d/play.log" 2>&1 || say "kube play failed: $(tail -3 "$d/play.log")"
      wait_count "$marks" "$n" 300 && upn+=($(( $(now_us) - t0 )))
      # `kube down` alone SIGKILLs at once (measured: 0.5 s for a PID 1 that ignores SIGTERM with
      # terminationGracePeriodSeconds 10); `pod stop` first gives the same grace as the others.
      t0=$(now_us); "${PM[@]}" pod stop --all >/dev/null 2>&1 || say "pod stop failed"
      "${PM[@]}" kube down "$d/k.yaml" >/dev/null 2>&1 || say "kube down failed"
      down+=($(( $(now_us) - t0 )))
      say "  round $r: up $n $(( ${upn[-1]:-0} / 1000 )) ms, down $(( ${down[-1]} / 1000 )) ms"
    done
    record "up_$n" podman us "${upn[@]}"
    record "teardown_$n" podman us "${down[@]}"
  done
  podman_clean
  unset CONTAINERS_CONF
}
podman_clean() {
  command -v podman >/dev/null || return 0
  "${PM[@]}" pod rm -af -t 0 >/dev/null 2>&1 || true
  "${PM[@]}" rm -af -t 0 >/dev/null 2>&1 || true
  local br=""
  br=$("${PM[@]}" network inspect "$pod_net" 2>/dev/null | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v[0].get("network_interface",""))' 2>/dev/null || true)
  "${PM[@]}" network rm -f "$pod_net" >/dev/null 2>&1 || true
  [ -n "$br" ] && ip link del "$br" 2>/dev/null || true
  # CNI's firewall plugin leaves its (empty) chains behind
  local c
  for c in $(iptables-save -t filter 2>/dev/null | awk '/^:CNI-/ {print substr($1, 2)}'); do
    iptables -t filter -D FORWARD -m comment --comment "CNI firewall plugin rules" -j "$c" 2>/dev/null || true
    iptables -t filter -F "$c" 2>/dev/null || true
  done
  for c in $(iptables-save -t filter 2>/dev/null | awk '/^:CNI-/ {print substr($1, 2)}'); do iptables -t filter -X "$c" 2>/dev/null || true; done
  for c in $(iptables-save -t nat 2>/dev/null | awk '/^:CNI-/ {print substr($1, 2)}'); do iptables -t nat -F "$c" 2>/dev/null || true; done
  for c in $(iptables-save -t nat 2>/dev/null | awk '/^:CNI-/ {print substr($1, 2)}'); do iptables -t nat -X "$c" 2>/dev/null || true; done
  [ -n "$fw_before" ] && fw_restore
}

# The peers' private data and run directories (named for this script only): unmounted and
# removed at the end, so a run leaves nothing behind.
peer_dirs_rm() {
  local d m
  for d in /var/lib/bench-docker /run/bench-docker-exec /var/lib/bench-podman /run/bench-podman; do
    [ -e "$d" ] || continue
    for m in $(findmnt -rn -o TARGET | grep "^$d" | sort -r); do umount -l "$m" 2>/dev/null; done
    rm -rf "$d"
  done
}

cleanup() {
  set +e
  agent_stop
  slow_registry_stop
  unset DOCKER_HOST
  dockerd_stop
  podman_clean
  peer_dirs_rm
  rm -rf "$bench_tmp"
}

# ================================================================== the report ====================
report() {
  python3 - "$TSV" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    m, e, u, vals = line.rstrip("\n").split("\t")
    v = [float(x) for x in vals.split(",") if x]
    if v:
        rows[(m, e)] = (u, v)
def med(m, e):
    if (m, e) not in rows: return None
    u, v = rows[(m, e)]
    x = statistics.median(v)
    return x / 1000 if u == "us" else x
def fmt(m, e):
    if (m, e) not in rows: return "-"
    u, v = rows[(m, e)]
    f = 1000 if u == "us" else 1
    x = med(m, e)
    unit = "ms" if u == "us" else u
    if unit == "ms" and x >= 1000:
        s = "%.2f s" % (x / 1000)
    else:
        s = "%.1f %s" % (x, unit) if unit != "/s" else "%.2f /s" % x
    if len(v) > 1:
        lo, hi = min(v) / f, max(v) / f
        s += " (%s-%s, n=%d)" % (("%.0f" % lo if lo >= 10 else "%.1f" % lo), ("%.0f" % hi if hi >= 10 else "%.1f" % hi), len(v))
    return s
def ratio(m, e):
    a, b = med(m, "agent"), med(m, e)
    return "-" if a is None or b is None or b == 0 else "%.2fx" % (a / b)
S = [
 ("teardown_10", "tear-down of 10 (default 10 s grace, PID 1 ignores SIGTERM)", "<= 1.1x compose"),
 ("teardown_50", "tear-down of 50 (same)", "<= 1.1x compose"),
 ("drop_during_teardown_10", "a manifest dropped while those 10 stop: until it runs", "< 1 s"),
 ("drop_during_teardown_50", "a manifest dropped while those 50 stop: until it runs", "< 1 s"),
 ("ps_during_stop", "`agent ps` while `agent stop -t 25` runs (samples every 200 ms)", "< 50 ms"),
 ("up_1", "up 1: file -> running", "<= 200 ms"),
 ("up_10", "up 10: files -> all running", ""),
 ("up_50", "up 50: files -> all running", "<= 0.2x compose"),
 ("noop_apply_50", "no-op `agent apply` with 50 running (CLI round trip; compose: `up -d` again)", "< 20 ms"),
 ("noop_pass_50", "the no-op pass itself (report's finished_at - started_at)", ""),
 ("comment_edit_pass_50", "a comment edited in one of 50 files -> pass done (agent log)", "< 100 ms"),
 ("restart_idle", "`restart: always` container SIGKILLed -> running again", "<= 250 ms"),
 ("restart_pull", "the same while an Image pulls from a 1 byte/s registry on 127.0.0.1", "<= 250 ms"),
 ("idle_wakeups_per_s_50", "idle, 50 running: voluntary context switches of the agent per second, all threads", "<= 1 /s"),
 ("idle_wakeups_main_thread_per_s_50", "the same, main thread only (/proc/<pid>/status)", ""),
]
print("| scenario | agent | compose | ratio | kube play | ratio | target |")
print("|---|---|---|---|---|---|---|")
for m, label, target in S:
    if not any((m, e) in rows for e in ("agent", "compose", "podman")):
        continue
    print("| %s | %s | %s | %s | %s | %s | %s |" % (label, fmt(m, "agent"), fmt(m, "compose"), ratio(m, "compose"), fmt(m, "podman"), ratio(m, "podman"), target))
PY
}

if [ -z "${REPORT_ONLY:-}" ]; then
  bench_tmp=$(mktemp -d /tmp/agent-bench-core-XXXXXX)
  chmod 755 "$bench_tmp"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  if [ -z "$BIN" ]; then
    cargo build --release -p agent --locked --quiet
    BIN=$PWD/target/release/agent
  fi
  [ -f "$IMAGE_TAR" ] || { echo "run scripts/build-test-images.sh first" >&2; exit 1; }
  echo >> "$LOG"
  say "core bench: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), ROUNDS=$ROUNDS SLOW_ROUNDS=$SLOW_ROUNDS"
  if has agent; then bench_agent; fi
  if has compose; then bench_compose; fi
  if has podman; then bench_podman; fi
  say "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
report > "$out/core.md"
cat "$out/core.md"
