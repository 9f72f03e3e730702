#!/usr/bin/env bash
# Builds tl, runs `tl bench` and the PyTorch reference side by side on this machine, and writes
# docs/benchmarks/<device>-<date>.md: the commit, the exact commands, both tables and the ratio tl/PyTorch per row.
#
#   usage: bench/run_all.sh [OUTDIR]        (raw JSON and logs go to OUTDIR, default $BUILD_DIR/bench-out)
#
# With a CUDA device: tl's kernels (vs copy bandwidth and cuDNN), the model rows at batch 32..256 and the per-layer
# breakdown, against PyTorch eager fp32, eager channels_last + bf16 autocast and torch.compile (ResNet18 at the
# largest batch, if it finishes in its time limit). Every stage has a time limit, so the whole run stays under
# 10 minutes once tl is built. Without one: the CPU rows at batch 8 and the CPU layer breakdown against
# `/usr/bin/python3 bench/pytorch_reference.py --device cpu` (Debian's python3-torch).
# Model by model, tl runs first and PyTorch right after it, so both sides see the same machine state.
#
# Environment (all optional):
#   BUILD_DIR           build folder (default build-bench; configured like scripts/gpu_check.sh when absent)
#   BENCH_NO_BUILD=1    use BUILD_DIR as it is
#   BENCH_JOBS          ninja -j (default: every core with a GPU, 1 without: the CPU machine is shared)
#   BENCH_BATCHES       GPU batch sizes (default 32,64,128,256)
#   BENCH_WARMUP, BENCH_REPS       per row (GPU default 3 and 10; CPU default 1 and 2)
#   BENCH_CPU_BATCH     (default 8)
#   BENCH_IMAGE         image side (default 224)
#   BENCH_THREADS       CPU threads of both sides (default: all cores)
#   BENCH_COMPILE=0     no torch.compile rows; BENCH_COMPILE_MODE (default max-autotune)
#   BENCH_TIME_SCALE    multiplies every stage's time limit (default 1; scripts/gpu_check.sh uses less)
#   BENCH_NOTE          a line for the results file (what else ran on the machine, ...)
#   BENCH_DOC           the results file (default docs/benchmarks/<device>-<date>.md)
#   PYTHON              interpreter of the PyTorch reference (default python3 with a GPU, /usr/bin/python3 without)
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
build="${BUILD_DIR:-build-bench}"
out="${1:-$build/bench-out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
: >"$out/stages.txt"
# Both sides wait passively in OpenMP (tl does so by default; the reference sets it too): spinning threads starve
# each other on a loaded machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
scale="${BENCH_TIME_SCALE:-1}"
started=$(date +%s)

# stage NAME SECONDS command...: runs under a time limit, logs to OUTDIR/NAME.log, records the outcome.
stage() {
  local name="$1" limit="$2"
  shift 2
  limit=$(python3 -c "print(max(10, int($limit * $scale)))")
  local t0=$(date +%s)
  echo "[run_all] $name (limit ${limit}s): $*" >&2
  timeout --kill-after=15 "$limit" "$@" >"$out/$name.log" 2>&1
  local status=$? t=$(( $(date +%s) - t0 ))
  local what="ok"
  if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    what="STOPPED at its ${limit}s limit: rows it had not finished are missing or marked"
  elif [ $status -ne 0 ]; then
    what="FAILED (exit $status), see $name.log: $(tail -1 "$out/$name.log" | cut -c1-200)"
  fi
  echo "- $name: $what (${t}s): \`$*\`" >>"$out/stages.txt"
  return $status
}

# ---- build
cudnn_root="${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn as c; print(list(c.__path__)[0])' 2>/dev/null)}"
[ -n "$cudnn_root" ] && export LD_LIBRARY_PATH="$cudnn_root/lib:${LD_LIBRARY_PATH:-}"
have_gpu=0
nvidia-smi -L >/dev/null 2>&1 && have_gpu=1
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  jobs="${BENCH_JOBS:-$([ $have_gpu = 1 ] && nproc || echo 1)}"
  if [ ! -f "$build/build.ninja" ]; then
    stage configure 300 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTL_DEPS_DIR="$root/.deps" \
      ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"} || { cat "$out/configure.log"; exit 1; }
  fi
  stage build 1200 ninja -C "$build" -j "$jobs" tl || { tail -30 "$out/build.log"; exit 1; }
fi
tl="$root/$build/tl"
[ -x "$tl" ] || { echo "run_all.sh: $tl not built" >&2; exit 1; }
if [ $have_gpu = 1 ] && "$tl" info 2>/dev/null | grep -q 'CUDA devices: 0'; then
  echo "run_all.sh: nvidia-smi sees a GPU but tl does not; running the CPU rows" >&2
  have_gpu=0
fi

commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (working tree has uncommitted changes)')"
date_utc="$(date -u +%Y-%m-%d)"
threads="${BENCH_THREADS:-$(nproc)}"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
if [ $have_gpu = 1 ]; then
  gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  device="$(echo "$gpu" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/-$//')"
  python="${PYTHON:-python3}"
  machine="$gpu ($(nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader | head -1)), $(nproc) CPU cores"
else
  device="cpu-$(nproc)-core"
  python="${PYTHON:-/usr/bin/python3}"
  machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, no GPU"
fi
doc="${BENCH_DOC:-docs/benchmarks/$device-$date_utc.md}"
ours=() theirs=()
image="${BENCH_IMAGE:-224}"

# ---- measurements, model by model: tl first, PyTorch right after
if [ $have_gpu = 1 ]; then
  batches="${BENCH_BATCHES:-32,64,128,256}"
  warmup="${BENCH_WARMUP:-3}" reps="${BENCH_REPS:-10}"
  largest="${batches##*,}"
  stage tl_kernels 50 "$tl" bench --kernels --json "$out/tl_kernels.json"
  ours+=("$out/tl_kernels.json")
  for model in resnet18 vgg16; do
    limit=$([ $model = vgg16 ] && echo 110 || echo 70)
    stage "tl_$model" $limit "$tl" bench --models --model $model --image-size "$image" --batches "$batches" --warmup "$warmup" \
      --reps "$reps" --json "$out/tl_$model.json"
    ours+=("$out/tl_$model.json")
    stage "pytorch_$model" $((limit + 20)) "$python" bench/pytorch_reference.py --device cuda --models $model --image-size "$image" \
      --batches "$batches" --warmup "$warmup" --reps "$reps" --configs eager_fp32,eager_bf16_cl \
      --json "$out/pytorch_$model.json"
    theirs+=("$out/pytorch_$model.json")
  done
  stage tl_layers 30 "$tl" bench --layers --image-size "$image" --batches "$largest" --warmup "$warmup" --reps "$reps" \
    --json "$out/tl_layers.json"
  ours+=("$out/tl_layers.json")
  if [ "${BENCH_COMPILE:-1}" != 0 ]; then
    stage pytorch_compile 90 "$python" bench/pytorch_reference.py --device cuda --models resnet18 --image-size "$image" \
      --batches "$largest" --modes inference,train --warmup "$warmup" --reps "$reps" --configs compile \
      --compile-mode "${BENCH_COMPILE_MODE:-max-autotune}" --json "$out/pytorch_compile.json"
    theirs+=("$out/pytorch_compile.json")
  else
    echo "- pytorch_compile: skipped (BENCH_COMPILE=0)" >>"$out/stages.txt"
  fi
else
  batch="${BENCH_CPU_BATCH:-8}"
  warmup="${BENCH_WARMUP:-1}" reps="${BENCH_REPS:-2}"
  for model in resnet18 vgg16; do
    limit=$([ $model = vgg16 ] && echo 330 || echo 150)
    stage "tl_$model" $limit "$tl" bench --cpu --model $model --image-size "$image" --cpu-batch "$batch" --cpu-warmup "$warmup" \
      --cpu-reps "$reps" --threads "$threads" --json "$out/tl_$model.json"
    ours+=("$out/tl_$model.json")
    stage "pytorch_$model" $limit "$python" bench/pytorch_reference.py --device cpu --models $model --image-size "$image" \
      --batches "$batch" --warmup "$warmup" --reps "$reps" --threads "$threads" --json "$out/pytorch_$model.json"
    theirs+=("$out/pytorch_$model.json")
  done
  stage tl_layers 60 "$tl" bench --layers --layers-device cpu --image-size "$image" --cpu-batch "$batch" --cpu-warmup "$warmup" \
    --cpu-reps "$reps" --threads "$threads" --json "$out/tl_layers.json"
  ours+=("$out/tl_layers.json")
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- one JSON per side (the stages' files merged), then the tables
merge() {
  python3 - "$@" <<'EOF'
import json, sys
target, sources = sys.argv[1], sys.argv[2:]
merged = None
for path in sources:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        continue  # a stage that failed or was stopped before writing
    if merged is None:
        merged = doc
        merged["command"] = doc.get("command", "")
        continue
    merged["command"] += " ; " + doc.get("command", "")
    for key in ("models", "kernels", "layers", "notes", "copy_bandwidth"):
        merged.setdefault(key, []).extend(doc.get(key, []))
    for key, ident in (("devices", ("device",)), ("matrix_rates", ("device", "precision"))):
        have = {tuple(r.get(k) for k in ident) for r in merged.setdefault(key, [])}
        merged[key].extend(r for r in doc.get(key, []) if tuple(r.get(k) for k in ident) not in have)
with open(target, "w") as f:
    json.dump(merged or {"models": []}, f, indent=1)
EOF
}
merge "$out/tl.json" "${ours[@]}"
merge "$out/pytorch.json" "${theirs[@]}"
"$tl" bench --render "$out/tl.json" --reference "$out/pytorch.json" >"$out/tables.md" 2>"$out/render.log" ||
  echo "- render: FAILED, see render.log" >>"$out/stages.txt"
elapsed=$(( $(date +%s) - started ))

mkdir -p "$(dirname "$doc")"
{
  echo "# Benchmarks: $device, $date_utc"
  echo
  echo "- commit: \`$commit\`$dirty"
  echo "- machine: $machine; load average $load_before before, $load_after after"
  [ -n "${BENCH_NOTE:-}" ] && echo "- note: $BENCH_NOTE"
  echo "- made by \`bench/run_all.sh\` in ${elapsed}s; OMP_WAIT_POLICY=$OMP_WAIT_POLICY for both sides"
  echo "- every ratio is **tl/PyTorch images per second** (above 1: tl is faster), both measured in this one run,"
  echo "  model by model (tl, then PyTorch right after), same batch, same work, same timing method"
  echo
  echo "## Stages (the exact commands)"
  echo
  cat "$out/stages.txt"
  echo
  echo "## Results"
  echo
  cat "$out/tables.md"
  echo
  echo "<details><summary>Raw JSON (tl, then PyTorch)</summary>"
  echo
  echo '```json'
  cat "$out/tl.json"
  echo '```'
  echo
  echo '```json'
  cat "$out/pytorch.json"
  echo '```'
  echo
  echo "</details>"
} >"$doc"
[ "$(realpath "$doc")" = "$(realpath "$out")/$(basename "$doc")" ] || cp "$doc" "$out/"
echo "run_all.sh: wrote $doc (raw files in $out) in ${elapsed}s" >&2
