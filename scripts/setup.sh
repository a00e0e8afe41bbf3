#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test the agent. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential pkg-config libseccomp-dev   # libcontainer's seccomp support
  busybox-static                              # test images are built from it
  iproute2 nftables iptables                  # network driver and its tests
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust with rustup (see rust-toolchain.toml)" >&2
  exit 1
fi
