#!/usr/bin/env bash
# Builds the clean Debian 12 root the package's e2e test (tests/tests/package_deb.rs) installs
# the .deb into: mmdebstrap's minbase plus what the package depends on (nftables; libseccomp2
# comes with apt), from the Debian mirror apt-get uses (packages only, no other network).
# Cached: a no-op when the tarball is current (the stamp holds this script's hash), so only the
# first run on a machine pays the ~1 minute.
#
# Usage: scripts/build-deb-root.sh [OUTDIR]   (default: $AGENT_TEST_IMAGES/deb-root, or
#        /var/lib/agent-test-images/deb-root). Run as root. Prints the tarball's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-${AGENT_TEST_IMAGES:-/var/lib/agent-test-images}/deb-root}
PACKAGES=nftables,libseccomp2
TAR="$OUT/bookworm-minbase.tar"
STAMP="script=$(sha256sum "$0" | cut -d' ' -f1)"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] && [ -f "$TAR" ]; then
  echo "$TAR"
  exit 0
fi
command -v mmdebstrap >/dev/null || {
  echo "build-deb-root: mmdebstrap is missing (apt-get install mmdebstrap; scripts/setup.sh does it)" >&2
  exit 1
}
install -d -m 0755 "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "build-deb-root: building $TAR from Debian packages (minbase, $PACKAGES)..." >&2
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" bookworm "$WORK/root.tar" >&2
mv "$WORK/root.tar" "$TAR"
echo "$STAMP" >"$OUT/stamp"
echo "build-deb-root: done ($(du -h "$TAR" | cut -f1))" >&2
echo "$TAR"
