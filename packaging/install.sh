#!/usr/bin/env bash
# Installs the agent as a systemd service: the binaries (`agent` and `agent-monitor-wait`, the
# small waiting half of each container's monitor, which `agent` runs from its own directory;
# --binary names `agent`, the other is taken beside it), the default config (kept if present), the
# manifest directory and the unit. Run as root from the repository, after
# `cargo build --release --locked`.
#   packaging/install.sh [--binary PATH] [--prefix /usr/local] [--no-start]
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/agent
prefix=/usr/local
start=1
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --no-start) start=0; shift ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root" >&2
  exit 1
fi
if [ ! -x "$binary" ]; then
  echo "install.sh: $binary is missing; run 'cargo build --release --locked' first" >&2
  exit 1
fi

wait_binary="$(dirname "$binary")/agent-monitor-wait"
if [ ! -x "$wait_binary" ]; then
  echo "install.sh: $wait_binary is missing; run 'cargo build --release --locked' first" >&2
  exit 1
fi

install -D -m 0755 "$binary" "$prefix/bin/agent"
install -D -m 0755 "$wait_binary" "$prefix/bin/agent-monitor-wait"
install -d -m 0755 /etc/agent /etc/agent.d
if [ ! -e /etc/agent/config.toml ]; then
  install -m 0644 packaging/config.toml /etc/agent/config.toml
else
  echo "install.sh: keeping the existing /etc/agent/config.toml"
fi
install -d -m 0755 /usr/share/doc/agent
install -m 0644 docs/daemon.md /usr/share/doc/agent/daemon.md
sed "s#/usr/local/bin/agent#$prefix/bin/agent#" packaging/agent.service \
  > /etc/systemd/system/agent.service
chmod 0644 /etc/systemd/system/agent.service

if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$start" = 1 ]; then
    systemctl enable --now agent.service
    systemctl --no-pager status agent.service || true
  fi
else
  echo "install.sh: systemd is not running here; start the agent with: $prefix/bin/agent run"
fi
