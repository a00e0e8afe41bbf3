#!/usr/bin/env bash
# The Debian package's tools: cargo-deb (pinned; built once, ~6 minutes on 2 cores; a no-op when
# that version is installed) and the clean Debian root its e2e test installs it into
# (scripts/build-deb-root.sh; a no-op when current).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi
bash scripts/build-deb-root.sh >/dev/null
