#!/usr/bin/env bash
# Builds the agent and runs it on examples/manifests: network `shop` (bridge agent-shop,
# 10.214.7.0/24), containers kv and web (web links kv as `db` and publishes 127.0.0.1:18080).
# Run as root. Ctrl-C stops the agent gracefully; the containers keep running (that is what the
# agent is for). `scripts/run-example.sh --clean` removes them, every bridge (the default
# network's too), the firewall rules and the example's state directory, without building.
#
# Options: --release (optimised build; slower to build), --clean, --help, --check (the test
# suite's: bring the example up, check it, then clean up as --clean does; non-zero on failure),
# --app (the realistic app of examples/app instead: Redis with a volume, Flask, nginx on two
# networks, its image built from Debian packages with mmdebstrap (~2 min, ~75 MB), the proxy on
# http://127.0.0.1:18081/).
# Environment: AGENT_EXAMPLE_DIR (default /var/lib/agent-example): state, socket, config and a
# root-owned copy of the manifests (the agent refuses manifest files others can write). Files
# you edit there are kept when the script runs again; a changed example is reported, not copied.
set -euo pipefail
cd "$(dirname "$0")/.."

release=0
clean=0
check=0
app=0
for arg in "$@"; do
  case "$arg" in
    --release) release=1 ;;
    --clean) clean=1 ;;
    --check) check=1 ;;
    --app) app=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-example: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "run-example: run as root: containers need namespaces, cgroups and bridges" >&2
  exit 1
fi

base="${AGENT_EXAMPLE_DIR:-/var/lib/agent-example}"
state="$base/state"
socket="$base/agent.sock"
config="$base/config.toml"
manifests="$base/manifests"
port=18080
examples=examples/manifests
if [ "$app" = 1 ]; then
  port=18081
  examples=examples/app
fi

if [ "$clean" = 1 ]; then
  # Cleaning builds nothing: it uses the binary a run built (release first).
  agent=""
  for candidate in "$PWD/target/release/agent" "$PWD/target/debug/agent"; do
    if [ -x "$candidate" ]; then agent="$candidate"; break; fi
  done
  if [ ! -e "$base" ]; then
    echo "run-example: clean: $base does not exist; nothing to remove"
    exit 0
  fi
  if [ -z "$agent" ]; then
    echo "run-example: clean: no agent binary in target/ to remove $base's containers with;" >&2
    echo "             run scripts/run-example.sh once (it builds one), then --clean" >&2
    exit 1
  fi
else
  # 1. What the build and the containers need (Debian packages, the busybox example image):
  #    no fuzzer, registry or benchmark tools.
  scripts/setup.sh --example
  if [ "$app" = 1 ]; then
    # mmdebstrap, then the image (a no-op when current).
    scripts/setup.sh --app
  fi

  # 2. The agent.
  if [ "$release" = 1 ]; then
    cargo build --release --locked -p agent --bins
    agent="$PWD/target/release/agent"
  else
    cargo build --locked -p agent --bins
    agent="$PWD/target/debug/agent"
  fi
fi

# 3. Its own directory, config (own firewall table, namespace and veth names) and manifests.
install -d -m 0700 "$base"
install -d -m 0755 "$manifests"
[ "$clean" = 1 ] && [ -e "$config" ] || cat > "$config" <<EOF
# Written by scripts/run-example.sh.
resync_interval = "30s"
[network]
bridge = "agentex0"
subnet = "10.215.0.0/24"
instance = "agentex"
veth_prefix = "agx"
[log]
level = "info"
format = "human"
EOF
run_agent() {
  "$agent" run --manifests "$1" --state-dir "$state" --socket "$socket" --config "$config" &
  agent_pid=$!
}
cli() {
  "$agent" "$@" --state-dir "$state" --socket "$socket" --config "$config"
}
names_running() {
  cli ps -o json 2>/dev/null | tr '{' '\n' | grep -c '"state": *"running"' || true
}

if [ "$clean" = 1 ]; then
  # The agent on an empty directory removes what the example's files described.
  empty="$base/empty"
  install -d -m 0755 "$empty"
  rm -f "$empty"/*
  run_agent "$empty"
  trap 'kill -INT $agent_pid 2>/dev/null || true' INT TERM
  echo "run-example: removing the example's containers and network (web takes ~10 s to stop)..."
  for _ in $(seq 1 120); do
    sleep 1
    if ! kill -0 "$agent_pid" 2>/dev/null; then
      echo "run-example: clean: the agent exited (is the example's agent still running? Ctrl-C it" >&2
      echo "             first); see its log above" >&2
      exit 1
    fi
    if cli ps -o json 2>/dev/null | grep -q '^\[\]$'; then
      break
    fi
  done
  sleep 2
  kill -INT "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" || true
  # Bridges (the default network's too) and the firewall table, chains and accept rules.
  if ! "$agent" system reset --state --state-dir "$state" --socket "$socket" --config "$config"; then
    echo "run-example: clean: agent system reset failed; see the messages above ($base kept)" >&2
    exit 1
  fi
  for b in agent-shop agent-front agent-back agentex0; do
    if ip link show "$b" >/dev/null 2>&1; then
      echo "run-example: bridge $b is still there; see the log above" >&2
      exit 1
    fi
  done
  rm -rf "$base"
  echo "run-example: clean: containers, bridges, firewall rules and $base removed"
  exit 0
fi

# The example's files, copied once: a file you edited (or added) in $manifests is kept.
for f in "$examples"/*.yaml; do
  target="$manifests/$(basename "$f")"
  if [ ! -e "$target" ]; then
    install -m 0644 -o root -g root "$f" "$target"
  elif ! cmp -s "$f" "$target"; then
    echo "run-example: keeping your edited $target (examples/ has another version of it)"
  fi
done

echo "run-example: starting the agent on $manifests (state in $state); Ctrl-C stops it"
run_agent "$manifests"
trap 'kill -INT $agent_pid 2>/dev/null || true' INT TERM

up=0
linked=0
wait_s=120
[ "$app" = 1 ] && wait_s=300
for _ in $(seq 1 "$wait_s"); do
  if ! kill -0 "$agent_pid" 2>/dev/null; then
    echo "run-example: the agent exited; see its log above" >&2
    exit 1
  fi
  if [ "$app" = 1 ]; then
    # proxy -> app -> db: a count from Redis through nginx and Flask proves the links.
    if body=$(curl -sf -m 5 "http://127.0.0.1:$port/") && [ "${body#hits }" != "$body" ]; then
      up=1
      linked=1
      break
    fi
  elif [ "$(names_running)" -ge 2 ] && body=$(curl -sf -m 2 "http://127.0.0.1:$port/"); then
    up=1
    break
  fi
  sleep 1
done
if [ "$up" = 1 ] && [ "$app" = 1 ]; then
  echo
  cli ps || true
  echo
  echo "run-example: db, app and proxy are up; curl http://127.0.0.1:$port/ answers: $body"
  echo "run-example: (nginx on network front -> Flask on front and back -> Redis on back)"
  echo "run-example: the agent binary is $agent; try: $agent ps --state-dir $state --socket $socket"
  echo "run-example: Ctrl-C stops the agent (the containers keep running;"
  echo "             'scripts/run-example.sh --clean' removes them)"
elif [ "$up" = 1 ]; then
  echo
  cli ps || true
  echo
  echo "run-example: containers kv and web are up; curl http://127.0.0.1:$port/ answers: $body"
  # busybox's `wget -T` crashes (Debian 12's busybox-static): the timeout is timeout(1)'s.
  linked=0
  for _ in 1 2 3 4 5; do
    if link=$(timeout 10 "$agent" exec --state-dir "$state" web -- \
        wget -q -O - http://db:6379/started 2>&1); then
      linked=1
      break
    fi
    sleep 1
  done
  if [ "$linked" = 1 ]; then
    echo "run-example: web reaches kv through the link alias db: kv started $link"
  else
    echo "run-example: LINK CHECK FAILED: web could not fetch http://db:6379/started (5 tries," >&2
    echo "             10 s each): ${link:-no output}" >&2
  fi
  echo "run-example: the agent binary is $agent; try: $agent ps --state-dir $state --socket $socket"
  echo "run-example: Ctrl-C stops the agent (the containers keep running;"
  echo "             'scripts/run-example.sh --clean' removes them)"
else
  echo "run-example: the containers did not come up within $wait_s s; the agent keeps running" >&2
fi

if [ "$check" = 1 ]; then
  kill -INT "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" || true
  trap - INT TERM
  if [ "$up" = 1 ] && [ "$linked" = 1 ]; then
    echo "run-example: check passed; cleaning up"
    exec "$0" --clean
  fi
  echo "run-example: CHECK FAILED (up=$up, link=$linked); cleaning up" >&2
  "$0" --clean || true
  exit 1
fi

set +e
wait "$agent_pid"
wait "$agent_pid" 2>/dev/null
echo
echo "run-example: the agent stopped. Its containers are still running (and"
echo "             http://127.0.0.1:$port/ keeps answering). Run the script again to adopt them,"
echo "             or 'scripts/run-example.sh --clean' to remove everything."
