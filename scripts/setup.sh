#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test the agent. Idempotent; run as root.
# Debian packages are listed one per line in scripts/apt/*.list (one file per area, `#` comments);
# further idempotent steps (test images, services) are scripts/setup.d/*.sh, run in name order.
#
# `scripts/setup.sh --example` installs only what building the agent and running the example
# need (scripts/apt/example.list and the busybox test images): no fuzzer, registry, skopeo or
# benchmark tools. scripts/run-example.sh uses it; `--app` installs what the example app's image
# needs (scripts/apt/app.list: mmdebstrap) and builds it (run-example.sh --app).
set -euo pipefail
cd "$(dirname "$0")/.."

lists=(scripts/apt/*.list)
steps=(scripts/setup.d/*.sh)
case "${1:-}" in
  "") ;;
  --example)
    lists=(scripts/apt/example.list)
    steps=(scripts/setup.d/20-test-images.sh)
    ;;
  --app)
    lists=(scripts/apt/app.list)
    steps=(scripts/setup.d/25-app-image.sh)
    ;;
  *) echo "setup: unknown option $1 (use --example, --app or nothing)" >&2; exit 2 ;;
esac

mapfile -t packages < <(cat "${lists[@]}" | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # firewalld is installed for a test that runs it privately (in a network namespace of its
  # own); where systemd runs, its package enables and starts it on the host: undo that.
  if [[ " ${missing[*]} " == *" firewalld "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now firewalld || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust with rustup (see rust-toolchain.toml)" >&2
  exit 1
fi

for step in "${steps[@]}"; do
  [ -e "$step" ] || continue
  bash "$step"
done
