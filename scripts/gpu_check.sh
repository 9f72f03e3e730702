#!/usr/bin/env bash
# The whole GPU check in one go, on a machine with an NVIDIA GPU (no Debian packages needed):
# build with sm_90, run the CUDA tests, every CPU test, compute-sanitizer memcheck over the CUDA tests, and the
# benchmarks against PyTorch (bench/run_all.sh, in a reduced configuration that fits what time is left).
# Everything lands in OUTDIR (summary.md plus the logs; the benchmark file also in docs/benchmarks/).
#   usage: scripts/gpu_check.sh OUTDIR        (first, on a Debian machine: scripts/vendor_header_deps.sh)
#
# The whole script keeps to a time budget (GPU_CHECK_BUDGET seconds, default 540: ~9 minutes on an H100 with 16
# cores). Each stage runs under `timeout` with the smaller of its own limit and what is left; a stage that no longer
# fits is skipped, and summary.md says which stages were stopped or skipped. Stages in order of importance:
# configure, build, CUDA tests, CPU tests, memcheck, benchmarks.
set -uo pipefail
out="${1:?usage: scripts/gpu_check.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
build=build-gpu
summary="$out/summary.md"
budget="${GPU_CHECK_BUDGET:-540}"
started=$(date +%s)
left() { echo $(( budget - ($(date +%s) - started) )); }

{
  echo "# GPU check"
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "- nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  echo "- time budget: ${budget}s"
} >"$summary"

# stage NAME WANT_SECONDS MIN_SECONDS command...: runs with a limit of min(WANT, time left); skipped when less than
# MIN is left. The log is OUTDIR/NAME.log; returns the command's status (124 when stopped, 125 when skipped).
stage() {
  local name="$1" want="$2" min="$3"
  shift 3
  local limit=$(left)
  [ "$limit" -gt "$want" ] && limit=$want
  if [ "$limit" -lt "$min" ]; then
    echo "- $name: SKIPPED (${limit}s of the budget left, needs ${min}s)" >>"$summary"
    return 125
  fi
  local t0=$(date +%s)
  timeout --kill-after=15 "$limit" "$@" >"$out/$name.log" 2>&1
  local status=$?
  local t=$(( $(date +%s) - t0 ))
  if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    echo "- $name: STOPPED at its ${limit}s limit (partial: see $name.log)" >>"$summary"
  else
    echo "- $name: exit $status in ${t}s" >>"$summary"
  fi
  return $status
}

# cuDNN comes with PyTorch's nvidia-cudnn wheel there.
cudnn_root="${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn as c; print(list(c.__path__)[0])' 2>/dev/null)}"
echo "- cuDNN root: ${cudnn_root:-system}" >>"$summary"

stage configure 120 10 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DTL_WITH_OPENBLAS=AUTO -DTL_WITH_HDF5=AUTO -DTL_DEPS_DIR="$PWD/.deps" ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"}
status=$?
if [ $status -eq 0 ]; then
  stage build 420 30 ninja -C "$build"
  status=$?
fi
echo "- build: $([ $status -eq 0 ] && echo ok || echo FAILED, see configure.log / build.log)" >>"$summary"
[ $status -eq 0 ] || { tail -30 "$out/build.log" 2>/dev/null; cat "$summary"; exit 1; }

export LD_LIBRARY_PATH="${cudnn_root:+$cudnn_root/lib:}${LD_LIBRARY_PATH:-}"
stage cuda_tests 120 20 "$build/tl_cuda_tests"
echo "- CUDA tests: $(grep -E 'test cases:' "$out/cuda_tests.log" 2>/dev/null | tail -1)" >>"$summary"
# The CPU tests (the CUDA binary ran above, so CTest's "cuda" entry is left out).
stage ctest 180 30 ctest --test-dir "$build" --output-on-failure -j 8 -E '^cuda$'
echo "- ctest: $(grep -E 'tests passed|tests failed' "$out/ctest.log" 2>/dev/null | tail -1)" >>"$summary"

sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
if [ -n "$sanitizer" ]; then
  # Leave the benchmarks at least 150 s.
  memcheck_limit=$(( $(left) - 150 ))
  [ $memcheck_limit -gt 150 ] && memcheck_limit=150
  stage memcheck "$memcheck_limit" 30 "$sanitizer" --tool memcheck --error-exitcode 3 "$build/tl_cuda_tests"
  echo "- compute-sanitizer memcheck: $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" 2>/dev/null | tail -1)" >>"$summary"
else
  echo "- compute-sanitizer: not found" >>"$summary"
fi

# Benchmarks in what is left: batches 32 and 256, 5 timed steps per row, torch.compile only when there is room.
# bench/run_all.sh's GPU stage limits add up to 480 s (570 s with compile); scale them to fit.
bench_left=$(( $(left) - 20 ))
if [ $bench_left -ge 60 ]; then
  compile=0
  [ $bench_left -ge 420 ] && compile=1
  scale=$(python3 -c "print(round(min(1.0, $bench_left / ($compile * 90 + 480)), 3))")
  BUILD_DIR="$build" BENCH_NO_BUILD=1 BENCH_BATCHES=32,256 BENCH_REPS=5 BENCH_COMPILE=$compile \
    BENCH_TIME_SCALE=$scale BENCH_NOTE="reduced configuration of scripts/gpu_check.sh (batches 32 and 256, 5 timed steps, stage limits x$scale); bench/run_all.sh alone gives the full set" \
    stage benchmarks $((bench_left + 15)) 60 bench/run_all.sh "$out/bench"
  echo "- benchmarks: $(ls "$out"/bench/*.md 2>/dev/null | grep -v tables.md | head -1) (stages in bench/stages.txt)" >>"$summary"
  [ -f "$out/bench/stages.txt" ] && sed 's/^/  /' "$out/bench/stages.txt" >>"$summary"
else
  echo "- benchmarks: SKIPPED (${bench_left}s left of the budget); run bench/run_all.sh on its own (under 10 minutes)" >>"$summary"
fi
echo "- total: $(( $(date +%s) - started ))s of ${budget}s" >>"$summary"
cat "$summary"
