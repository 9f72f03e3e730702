#!/usr/bin/env bash
# The whole GPU check in one go, on a machine with an NVIDIA GPU (no Debian packages needed):
# build with sm_90, run every test including the CUDA ones, compute-sanitizer memcheck over the CUDA tests.
# Everything lands in OUTDIR (summary.md plus the logs).
#   usage: scripts/gpu_check.sh OUTDIR        (first, on a Debian machine: scripts/vendor_header_deps.sh)
set -uo pipefail
out="${1:?usage: scripts/gpu_check.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
build=build-gpu
summary="$out/summary.md"

{
  echo "# GPU check"
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "- nvcc: $(nvcc --version 2>/dev/null | tail -1)"
} >"$summary"

# cuDNN comes with PyTorch's nvidia-cudnn wheel there.
cudnn_root="${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn as c; print(list(c.__path__)[0])' 2>/dev/null)}"
echo "- cuDNN root: ${cudnn_root:-system}" >>"$summary"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DTL_WITH_OPENBLAS=AUTO -DTL_WITH_HDF5=AUTO -DTL_DEPS_DIR="$PWD/.deps" ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"} \
  >"$out/configure.log" 2>&1
status=$?
if [ $status -eq 0 ]; then
  ninja -C "$build" >"$out/build.log" 2>&1
  status=$?
fi
echo "- build: $([ $status -eq 0 ] && echo ok || echo FAILED, see build.log)" >>"$summary"
[ $status -eq 0 ] || { tail -30 "$out/build.log"; exit 1; }

export LD_LIBRARY_PATH="${cudnn_root:+$cudnn_root/lib:}${LD_LIBRARY_PATH:-}"
ctest --test-dir "$build" --output-on-failure -j4 >"$out/ctest.log" 2>&1
echo "- ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)" >>"$summary"
"$build/tl_cuda_tests" >"$out/cuda_tests.log" 2>&1
echo "- CUDA tests: $(grep -E 'test cases:' "$out/cuda_tests.log" | tail -1)" >>"$summary"

sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
if [ -n "$sanitizer" ]; then
  "$sanitizer" --tool memcheck --error-exitcode 3 "$build/tl_cuda_tests" >"$out/memcheck.log" 2>&1
  echo "- compute-sanitizer memcheck: exit $? ($(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1))" >>"$summary"
else
  echo "- compute-sanitizer: not found" >>"$summary"
fi
cat "$summary"
