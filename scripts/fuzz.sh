#!/usr/bin/env bash
# libFuzzer runs of the untrusted-file parsers (docs/fuzzing.md).
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]   build, fuzz, print a summary
#   scripts/fuzz.sh --build TARGET                        only build build-fuzz/fuzz/tl_fuzz_TARGET
#   scripts/fuzz.sh --merge TARGET DIR                    add to fuzz/corpus/TARGET the inputs of DIR
#                                                         that reach new coverage (libFuzzer -merge=1)
# TARGET: safetensors, json, pickle or pth. The main build uses g++; libFuzzer needs clang, so this uses
# its own build folder (TL_FUZZ_BUILD_DIR, default build-fuzz) configured with clang and -DTL_FUZZ=ON.
# Each run works in TL_FUZZ_WORK (default /tmp/tl-fuzz/TARGET-<time>): corpus/ holds what the run
# found (the committed corpus is only read), crashes/ any finding, fuzz.log the full output.
# Exit status: 0 without findings, 1 with findings, 2 on a usage or build error.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${TL_FUZZ_BUILD_DIR:-build-fuzz}

usage() {
  sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

max_len_for() {
  case "$1" in
    safetensors | json) echo 4096 ;;
    pickle) echo 16384 ;;  # keeps the real ResNet18 data.pkl seed (14.8 KB) whole
    pth) echo 65536 ;;     # keeps the 64 KiB heads of the real checkpoints whole
    *) echo "unknown fuzz target '$1' (safetensors, json, pickle or pth)" >&2; exit 2 ;;
  esac
}

build() {
  local target=$1
  if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    # CUDA sources keep nvcc with g++ as its host compiler; only C and C++ go through clang.
    CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DTL_FUZZ=ON -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_HOST_COMPILER=g++ -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
      -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache >/dev/null || exit 2
  fi
  local out
  if ! out=$(ninja -C "$BUILD_DIR" -j2 "tl_fuzz_$target" 2>&1); then
    grep -v '^-- ' <<<"$out" | tail -30 >&2
    echo "build of tl_fuzz_$target failed" >&2
    exit 2
  fi
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

[[ $# -ge 2 ]] || usage
case "$1" in
  --build)
    max_len_for "$2" >/dev/null
    build "$2"
    echo "$BUILD_DIR/fuzz/tl_fuzz_$2"
    exit 0
    ;;
  --merge)
    [[ $# -eq 3 ]] || usage
    target=$2
    max_len=$(max_len_for "$target")
    build "$target"
    before=$(ls "fuzz/corpus/$target" | wc -l)
    "$BUILD_DIR/fuzz/tl_fuzz_$target" -merge=1 -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
      "fuzz/corpus/$target" "$3" >/dev/null 2>&1 || { echo "merge failed" >&2; exit 1; }
    after=$(ls "fuzz/corpus/$target" | wc -l)
    echo "fuzz/corpus/$target: $before -> $after files, $(du -sb "fuzz/corpus/$target" | cut -f1) bytes"
    exit 0
    ;;
esac

target=$1
seconds=$2
shift 2
max_len=$(max_len_for "$target")
[[ $seconds =~ ^[0-9]+$ ]] || usage
build "$target"

commit=$(git rev-parse --short HEAD)
started=$(date -u +%Y-%m-%dT%H:%MZ)
work=${TL_FUZZ_WORK:-/tmp/tl-fuzz/$target-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$work/corpus" "$work/crashes"
log=$work/fuzz.log

# New inputs go to the first folder (the scratch corpus); the committed seeds are read from the second.
set +e
"$BUILD_DIR/fuzz/tl_fuzz_$target" "$work/corpus" "fuzz/corpus/$target" \
  -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix="$work/crashes/" -print_final_stats=1 "$@" >"$log" 2>&1
status=$?
set -e

stat() { grep -m1 "^stat::$1:" "$log" | awk '{print $2}'; }
findings=$(find "$work/crashes" -type f | wc -l)
echo "target:          $target (commit $commit, started $started)"
echo "seconds:         $seconds"
echo "executions:      $(stat number_of_executed_units)"
echo "exec/s:          $(stat average_exec_per_sec)"
echo "new corpus:      $(stat new_units_added) inputs ($(ls "$work/corpus" | wc -l) files kept in $work/corpus)"
echo "coverage:        $(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || echo '?')"
echo "peak RSS:        $(stat peak_rss_mb) MB"
echo "findings:        $findings"
if [[ $findings -gt 0 || $status -ne 0 ]]; then
  find "$work/crashes" -type f | sed 's/^/  /'
  grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|fuzz_[a-z]+: ' "$log" | sed 's/^/  /' || true
  echo "  full report: $log (libFuzzer exit status $status)"
  exit 1
fi
echo "log:             $log"
