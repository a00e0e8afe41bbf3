#!/usr/bin/env bash
# Builds the busybox test images into /var/lib/agent-test-images (or $AGENT_TEST_IMAGES); a no-op
# when they are already current.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build-test-images.sh
