#!/usr/bin/env bash
# Installs the Debian packages tl needs to build, test and run its demo, only when missing.
# CUDA 13 (nvcc, cuBLAS, cuDNN) is expected under /usr/local/cuda, as on the project's machines.
set -euo pipefail

packages=(cmake ninja-build g++ doctest-dev libstb-dev libopenblas-dev zlib1g-dev libhdf5-dev dataset-fashion-mnist)
command -v ccache >/dev/null || packages+=(ccache)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
  echo "setup: nvcc not found: install CUDA 13 under /usr/local/cuda (tl compiles its CUDA code everywhere)" >&2
  exit 1
fi
echo "setup: all packages present"
