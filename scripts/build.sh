#!/usr/bin/env bash
# Configures and builds everything (library, tl, tests) in build/ (or $TL_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${TL_BUILD_DIR:-build}"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@" >/dev/null
ninja -C "$build"
