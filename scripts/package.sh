#!/usr/bin/env bash
# Builds the Debian package of the agent with cargo-deb (metadata: [package.metadata.deb] in
# agent/Cargo.toml): both binaries in /usr/bin, the systemd units (agent.service, the optional
# agent.socket) in /lib/systemd/system, /etc/agent/config.toml (a conffile), /etc/agent.d,
# bash/zsh/fish completions and man pages (generated here by the built binary), the docs and
# the example manifests, and maintainer scripts that talk to systemd only where it is PID 1.
#
# Usage: scripts/package.sh [--debug] [--no-build] [--fast] [--out DIR]
#   --debug     package target/debug (the test suite's build; large, unoptimised) instead of a
#               release build
#   --no-build  use the binaries already in target/<profile> (default: cargo build --locked)
#   --fast      faster, weaker compression (the e2e test uses it)
#   --out DIR   where the .deb goes (default: target/debian); its path is printed last
# Needs cargo-deb (`cargo install --locked cargo-deb`; scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
dir=release
build=1
out=target/debian
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=dev; dir=debug; shift ;;
    --no-build) build=0; shift ;;
    --fast) extra+=(--fast); shift ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! cargo deb --version >/dev/null 2>&1; then
  echo "package.sh: cargo-deb is missing: cargo install --locked cargo-deb (scripts/setup.sh does it)" >&2
  exit 1
fi

target="${CARGO_TARGET_DIR:-target}"
if [ "$build" = 1 ]; then
  cargo build --locked --profile "$profile" -p agent --bins
fi
bin="$target/$dir/agent"
for b in "$bin" "$target/$dir/agent-monitor-wait"; do
  if [ ! -x "$b" ]; then
    echo "package.sh: $b is missing; build it first (or drop --no-build)" >&2
    exit 1
  fi
done

# Generated assets, from the binary's own command tree.
assets="$target/$dir/package"
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/man"
"$bin" completion bash >"$assets/completions/agent"
"$bin" completion zsh >"$assets/completions/_agent"
"$bin" completion fish >"$assets/completions/agent.fish"
"$bin" man "$assets/man" >/dev/null
gzip -9n "$assets/man/"*.1

mkdir -p "$out"
# cargo-deb maps the assets' target/release/ to target/<profile dir>/. Its last line is the
# path of the .deb.
cargo deb -p agent --no-build --profile "$profile" --locked --output "$out" ${extra[@]+"${extra[@]}"} | tail -1
