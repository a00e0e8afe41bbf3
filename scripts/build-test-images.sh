#!/usr/bin/env bash
# Builds the small multi-layer busybox test image from Debian's `busybox-static`, in every format the
# graph driver imports. Deterministic (fixed mtimes, sorted entries, `gzip -n`), so the digests are
# the same on every machine with the same busybox-static version. Idempotent: does nothing when the
# output directory already holds images built by this version of the script from this busybox.
#
# Usage: scripts/build-test-images.sh [OUTDIR]     (default: $AGENT_TEST_IMAGES or
#                                                   /var/lib/agent-test-images)
#
# Output (all in OUTDIR):
#   oci/            OCI image layout directory, one image, ref name "latest"
#   oci.tar         the same layout as a tar
#   docker.tar      `docker save` archive (manifest.json + repositories), RepoTag agent-test/busybox:latest
#   rootfs.tar      the flattened root filesystem (for `docker import`-style loading)
#   rootfs/         the same root filesystem unpacked (for runtime tests that need a plain rootfs)
#   digests.env     shell-sourceable names and digests (MANIFEST_DIGEST, CONFIG_DIGEST, LAYERn_*)
#   stamp           script + busybox hash the outputs were built from
#
# The image (linux/<host arch>):
#   layer 1 (gzip):         /bin/busybox, /bin/<applet> -> busybox, /etc/passwd, /etc/group, /tmp (1777)
#   layer 2 (zstd):         /etc/motd, /data/{kept.txt,removed.txt,hardlink (hard link to kept.txt)},
#                           /opaque/{old1.txt,sub/old2.txt}, /home/user/owned (1000:1000 0640),
#                           /data/link -> kept.txt (symlink)
#   layer 3 (uncompressed): /data/.wh.removed.txt (whiteout), /opaque/.wh..wh..opq (opaque dir),
#                           /opaque/new.txt, /etc/layer3
#   config: Cmd ["/bin/sh"], Env PATH=/bin, WorkingDir /
# In the docker archive every layer is an uncompressed layer.tar (as `docker save` writes them).
set -euo pipefail

BUSYBOX=/bin/busybox
OUT=${1:-${AGENT_TEST_IMAGES:-/var/lib/agent-test-images}}
SCRIPT_HASH=$(sha256sum "$0" | cut -d' ' -f1)
[ -x "$BUSYBOX" ] || { echo "build-test-images: $BUSYBOX missing; install busybox-static" >&2; exit 1; }
BB_HASH=$(sha256sum "$BUSYBOX" | cut -d' ' -f1)
STAMP="script=$SCRIPT_HASH busybox=$BB_HASH"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ]; then
  exit 0
fi

case "$(uname -m)" in
  x86_64) ARCH=amd64 VARIANT= ;;
  aarch64) ARCH=arm64 VARIANT=v8 ;;
  armv7l) ARCH=arm VARIANT=v7 ;;
  armv6l) ARCH=arm VARIANT=v6 ;;
  i686 | i386) ARCH=386 VARIANT= ;;
  *) ARCH=$(uname -m) VARIANT= ;;
esac

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
umask 022

# Deterministic tar of a staging directory's contents to stdout.
mktar() {
  tar --create --file=- --directory="$1" --format=gnu --sort=name --numeric-owner \
    --mtime=@0 .
}
# The same for archives (OCI layout tar, docker archive): member names without a "./" prefix, as
# `docker save` and skopeo write them.
mkarchive() {
  (cd "$1" && tar --create --file=- --format=gnu --sort=name --numeric-owner --mtime=@0 -- *)
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# ---- layer contents ----
L1=$WORK/l1 L2=$WORK/l2 L3=$WORK/l3
mkdir -p "$L1"/{bin,etc,tmp,root} "$L2"/{etc,data,opaque/sub,home/user} "$L3"/{data,opaque,etc}
cp "$BUSYBOX" "$L1/bin/busybox"
chmod 0755 "$L1/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$L1/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$L1/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n' >"$L1/etc/group"
chmod 1777 "$L1/tmp"
chmod 0700 "$L1/root"

echo "hello from layer 2" >"$L2/etc/motd"
echo "kept" >"$L2/data/kept.txt"
echo "removed by layer 3" >"$L2/data/removed.txt"
ln "$L2/data/kept.txt" "$L2/data/hardlink"
ln -s kept.txt "$L2/data/link"
echo "old1" >"$L2/opaque/old1.txt"
echo "old2" >"$L2/opaque/sub/old2.txt"
echo "owned by user" >"$L2/home/user/owned"
chmod 0640 "$L2/home/user/owned"
chown -R 1000:1000 "$L2/home/user"

: >"$L3/data/.wh.removed.txt"
: >"$L3/opaque/.wh..wh..opq"
echo "new in layer 3" >"$L3/opaque/new.txt"
echo "layer 3" >"$L3/etc/layer3"

for d in "$L1" "$L2" "$L3"; do touch -h -d @0 "$d" "$d"/* "$d"/*/* 2>/dev/null || true; done

# ---- layer blobs ----
BLOBS=$WORK/oci/blobs/sha256
mkdir -p "$BLOBS" "$WORK/docker"
mktar "$L1" >"$WORK/l1.tar"
mktar "$L2" >"$WORK/l2.tar"
mktar "$L3" >"$WORK/l3.tar"
gzip -n -9 -c "$WORK/l1.tar" >"$WORK/l1.tar.gz"
zstd -q -19 -c "$WORK/l2.tar" >"$WORK/l2.tar.zst"
cp "$WORK/l3.tar" "$WORK/l3.blob"

DIFF1=$(sha "$WORK/l1.tar") DIFF2=$(sha "$WORK/l2.tar") DIFF3=$(sha "$WORK/l3.tar")
B1=$(sha "$WORK/l1.tar.gz") B2=$(sha "$WORK/l2.tar.zst") B3=$(sha "$WORK/l3.blob")
S1=$(size "$WORK/l1.tar.gz") S2=$(size "$WORK/l2.tar.zst") S3=$(size "$WORK/l3.blob")
cp "$WORK/l1.tar.gz" "$BLOBS/$B1"
cp "$WORK/l2.tar.zst" "$BLOBS/$B2"
cp "$WORK/l3.blob" "$BLOBS/$B3"

# ---- config ----
VARIANT_JSON=
[ -n "$VARIANT" ] && VARIANT_JSON=",\"variant\":\"$VARIANT\""
printf '%s' "{\"created\":\"1970-01-01T00:00:00Z\",\"architecture\":\"$ARCH\"$VARIANT_JSON,\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/bin\"],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$DIFF1\",\"sha256:$DIFF2\",\"sha256:$DIFF3\"]},\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"build-test-images.sh layer 1\"},{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"build-test-images.sh layer 2\"},{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"build-test-images.sh layer 3\"}]}" >"$WORK/config.json"
CONFIG=$(sha "$WORK/config.json")
CONFIG_SIZE=$(size "$WORK/config.json")
cp "$WORK/config.json" "$BLOBS/$CONFIG"

# ---- OCI manifest, index, layout ----
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$CONFIG\",\"size\":$CONFIG_SIZE},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$B1\",\"size\":$S1},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"sha256:$B2\",\"size\":$S2},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$B3\",\"size\":$S3}]}" >"$WORK/manifest.json"
MANIFEST=$(sha "$WORK/manifest.json")
MANIFEST_SIZE=$(size "$WORK/manifest.json")
cp "$WORK/manifest.json" "$BLOBS/$MANIFEST"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$MANIFEST\",\"size\":$MANIFEST_SIZE,\"annotations\":{\"org.opencontainers.image.ref.name\":\"latest\",\"io.containerd.image.name\":\"agent-test/busybox:latest\"},\"platform\":{\"architecture\":\"$ARCH\",\"os\":\"linux\"$VARIANT_JSON}}]}" >"$WORK/oci/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$WORK/oci/oci-layout"
find "$WORK/oci" -exec touch -h -d @0 {} +
mkarchive "$WORK/oci" >"$WORK/oci.tar"

# ---- docker save archive ----
D=$WORK/docker
cp "$WORK/config.json" "$D/$CONFIG.json"
for i in 1 2 3; do
  eval "id=\$DIFF$i"
  mkdir -p "$D/$id"
  cp "$WORK/l$i.tar" "$D/$id/layer.tar"
  printf '1.0' >"$D/$id/VERSION"
done
printf '%s' "[{\"Config\":\"$CONFIG.json\",\"RepoTags\":[\"agent-test/busybox:latest\"],\"Layers\":[\"$DIFF1/layer.tar\",\"$DIFF2/layer.tar\",\"$DIFF3/layer.tar\"]}]" >"$D/manifest.json"
printf '%s' "{\"agent-test/busybox\":{\"latest\":\"$DIFF3\"}}" >"$D/repositories"
find "$D" -exec touch -h -d @0 {} +
mkarchive "$D" >"$WORK/docker.tar"

# ---- flattened rootfs ----
R=$WORK/rootfs
mkdir -p "$R"
tar -x -C "$R" --numeric-owner -f "$WORK/l1.tar"
tar -x -C "$R" --numeric-owner -f "$WORK/l2.tar"
rm -f "$R/data/removed.txt"
rm -rf "$R/opaque"
tar -x -C "$R" --numeric-owner -f "$WORK/l3.tar" --exclude='.wh.*'
find "$R" -exec touch -h -d @0 {} +
mktar "$R" >"$WORK/rootfs.tar"

cat >"$WORK/digests.env" <<EOF
IMAGE_NAME=agent-test/busybox:latest
PLATFORM=linux/$ARCH${VARIANT:+/$VARIANT}
MANIFEST_DIGEST=sha256:$MANIFEST
CONFIG_DIGEST=sha256:$CONFIG
LAYER1_BLOB=sha256:$B1
LAYER2_BLOB=sha256:$B2
LAYER3_BLOB=sha256:$B3
LAYER1_DIFF_ID=sha256:$DIFF1
LAYER2_DIFF_ID=sha256:$DIFF2
LAYER3_DIFF_ID=sha256:$DIFF3
ROOTFS_TAR_DIGEST=sha256:$(sha "$WORK/rootfs.tar")
EOF

# ---- install atomically-ish: build next to OUT, then swap ----
mkdir -p "$(dirname "$OUT")"
NEW="$OUT.new.$$"
rm -rf "$NEW"
mkdir -p "$NEW"
mv "$WORK/oci" "$WORK/oci.tar" "$WORK/docker.tar" "$WORK/rootfs.tar" "$R" "$WORK/digests.env" "$NEW/"
printf '%s\n' "$STAMP" >"$NEW/stamp"
OLD="$OUT.old.$$"
[ -e "$OUT" ] && mv "$OUT" "$OLD"
mv "$NEW" "$OUT"
rm -rf "$OLD"
echo "build-test-images: wrote $OUT ($(grep MANIFEST_DIGEST "$OUT/digests.env"))"
