#!/usr/bin/env bash
# Builds the example app's image from Debian packages (scripts/build-app-image.sh); a no-op when
# it is current. The e2e test tests/tests/example_app.rs runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build-app-image.sh
