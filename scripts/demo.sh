#!/usr/bin/env bash
# The main job: builds tl and runs the demo on the GPU when there is one, else on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./"${TL_BUILD_DIR:-build}"/tl train-mnist --device auto --epochs 3
