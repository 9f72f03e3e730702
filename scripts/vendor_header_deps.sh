#!/usr/bin/env bash
# Copies the header-only dependencies (doctest, stb_image) from Debian's packages into .deps/ (git-ignored), so they
# can travel to a machine without Debian packages (the GPU machine): cmake -DTL_DEPS_DIR=.deps
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps/doctest .deps/stb
cp /usr/include/doctest/doctest.h .deps/doctest/
cp /usr/include/stb/stb_image.h .deps/stb/
echo "vendored doctest and stb_image into .deps/"
