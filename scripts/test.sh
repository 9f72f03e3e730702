#!/usr/bin/env bash
# Builds and runs every test. CUDA tests skip with one line when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir "${TL_BUILD_DIR:-build}" --output-on-failure -j2
