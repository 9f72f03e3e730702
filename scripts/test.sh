#!/usr/bin/env bash
# Builds and runs every test. CUDA tests skip with one line when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir "${TL_BUILD_DIR:-build}" --output-on-failure -j2
# CTest shows the CUDA binary only as "Skipped" without a GPU; say how many CUDA tests that was.
if ! "${TL_BUILD_DIR:-build}/tl_cuda_tests" --list-test-cases >/dev/null 2>&1; then
  "${TL_BUILD_DIR:-build}/tl_cuda_tests" || true
fi
