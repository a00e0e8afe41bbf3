#!/usr/bin/env bash
# Builds the example app's image (examples/app): a Debian 12 root filesystem made by mmdebstrap
# from Debian packages (nginx-light, python3-flask, python3-redis, redis-server) with the app's
# code (examples/app/src/app -> /srv/app) and the proxy's config (examples/app/src/nginx ->
# /etc/nginx/conf.d). One image serves the three containers, as one `docker build` of a
# Debian-based image would. The tarball keeps what mmdebstrap writes, device nodes in ./dev
# included (the agent imports them as `docker import` does).
#
# Usage: scripts/build-app-image.sh [OUTDIR]   (default: $AGENT_TEST_IMAGES or
#        /var/lib/agent-test-images). Run as root. A no-op when the image is current (the stamp
#        holds the hash of this script and of examples/app/src). Needs the network access to the
#        Debian mirror that apt-get uses (packages only) and ~250 MB of disk.
# Output: OUTDIR/debian-app.tar.zst (zstd rootfs tarball) and OUTDIR/debian-app.stamp.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-${AGENT_TEST_IMAGES:-/var/lib/agent-test-images}}
PACKAGES=nginx-light,python3-flask,python3-redis,redis-server
STAMP="script=$(sha256sum "$0" | cut -d' ' -f1) src=$(find examples/app/src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT/debian-app.stamp" ] && [ "$(cat "$OUT/debian-app.stamp")" = "$STAMP" ] &&
  [ -f "$OUT/debian-app.tar.zst" ]; then
  exit 0
fi
for tool in mmdebstrap zstd; do
  command -v "$tool" >/dev/null || {
    echo "build-app-image: $tool is missing (apt-get install $tool; scripts/setup.sh does it)" >&2
    exit 1
  }
done
install -d -m 0755 "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
src="$PWD/examples/app/src"
echo "build-app-image: building $OUT/debian-app.tar.zst from Debian packages ($PACKAGES)..."
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --customize-hook="mkdir -p \"\$1/srv\" && cp -r '$src/app' \"\$1/srv/app\"" \
  --customize-hook="cp '$src/nginx/app.conf' \"\$1/etc/nginx/conf.d/app.conf\"" \
  --customize-hook="rm -f \"\$1/etc/nginx/sites-enabled/default\"" \
  --customize-hook="mkdir -p \"\$1/data\" && chown 0:0 \"\$1/data\"" \
  bookworm "$WORK/rootfs.tar"
zstd -q -T0 -3 "$WORK/rootfs.tar" -o "$WORK/debian-app.tar.zst"
mv "$WORK/debian-app.tar.zst" "$OUT/debian-app.tar.zst"
echo "$STAMP" >"$OUT/debian-app.stamp"
echo "build-app-image: done ($(du -h "$OUT/debian-app.tar.zst" | cut -f1))"
