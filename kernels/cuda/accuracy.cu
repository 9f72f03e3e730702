// Row argmax and the count of correct predictions on CUDA: one warp per row (grid-stride over
// rows), lanes scanning strided columns (coalesced), then a shuffle reduction under the same total
// order as the CPU twin: larger value first, NaN above every number, ties to the lower index.
#include <cmath>
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/accuracy.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"

namespace tl::cuda {

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr unsigned long long kNoBadLabel = ~0ull;

// Device scratch for count_correct (the context's workspace), read back in one copy.
struct CountScratch {
  unsigned long long correct;
  unsigned long long first_bad;  // smallest row index whose label is outside [0,C); kNoBadLabel if none
};

// Whether column (v, i) is preferred to the best so far (best_v, best_i).
__device__ bool beats(float v, long long i, float best_v, long long best_i) {
  bool v_nan = isnan(v), best_nan = isnan(best_v);
  if (v_nan || best_nan) return v_nan && (!best_nan || i < best_i);
  if (v != best_v) return v > best_v;
  return i < best_i;
}

// The argmax of row[0, classes), valid in lane 0. Every lane of the warp must call it.
__device__ long long warp_row_argmax(const float* row, int64_t classes, int lane) {
  // Sentinel index `classes`: loses every tie with a real column, so lanes without columns never win.
  float best_v = -INFINITY;
  long long best_i = classes;
  for (int64_t j = lane; j < classes; j += kWarp) {
    float v = row[j];
    if (beats(v, j, best_v, best_i)) {
      best_v = v;
      best_i = j;
    }
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    float other_v = __shfl_down_sync(kFullMask, best_v, offset);
    long long other_i = __shfl_down_sync(kFullMask, best_i, offset);
    if (beats(other_v, other_i, best_v, best_i)) {
      best_v = other_v;
      best_i = other_i;
    }
  }
  return best_i;
}

// Rows are dealt to warps; `row < rows` is the same for all lanes of a warp, so the full-mask
// shuffles inside warp_row_argmax always see every lane.
__global__ void argmax_rows_kernel(const float* logits, int64_t rows, int64_t classes, int64_t* indices) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first_warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / kWarp;
  for (int64_t row = first_warp; row < rows; row += warps) {
    long long best = warp_row_argmax(logits + row * classes, classes, lane);
    if (lane == 0) indices[row] = best;
  }
}

__global__ void count_correct_kernel(const float* logits, const int64_t* labels, int64_t rows, int64_t classes,
                                     CountScratch* scratch) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first_warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / kWarp;
  unsigned long long correct = 0;
  for (int64_t row = first_warp; row < rows; row += warps) {
    long long best = warp_row_argmax(logits + row * classes, classes, lane);
    if (lane == 0) {
      int64_t label = labels[row];
      // atomicMin: the smallest bad row is named whatever order the warps run in, as on the CPU.
      if (label < 0 || label >= classes) atomicMin(&scratch->first_bad, static_cast<unsigned long long>(row));
      else correct += best == label;
    }
  }
  if (lane == 0 && correct != 0) atomicAdd(&scratch->correct, correct);  // integer sum: order-free
}

// One warp per row: ceil(rows / warps per block) blocks, capped by grid_for.
unsigned grid_for_rows(int64_t rows) { return grid_for(rows * kWarp); }

}  // namespace

void argmax_rows(Context& ctx, const Tensor& logits, Tensor& indices) {
  check_f32("argmax_rows", logits);
  int64_t rows = logits.size(0), classes = logits.size(1);
  argmax_rows_kernel<<<grid_for_rows(rows), kThreadsPerBlock, 0, ctx.cuda().stream>>>(
      logits.data<float>(), rows, classes, indices.data<int64_t>());
  TL_CUDA_CHECK_LAUNCH("argmax_rows_kernel");
}

int64_t count_correct(Context& ctx, const Tensor& logits, const Tensor& labels) {
  const char* op = "count_correct";
  check_f32(op, logits);
  int64_t rows = logits.size(0), classes = logits.size(1);
  cudaStream_t stream = ctx.cuda().stream;
  auto* scratch = static_cast<CountScratch*>(ctx.cuda().workspace(sizeof(CountScratch)));
  TL_CUDA_CHECK(cudaMemsetAsync(&scratch->correct, 0, sizeof scratch->correct, stream));
  TL_CUDA_CHECK(cudaMemsetAsync(&scratch->first_bad, 0xFF, sizeof scratch->first_bad, stream));
  count_correct_kernel<<<grid_for_rows(rows), kThreadsPerBlock, 0, stream>>>(
      logits.data<float>(), labels.data<int64_t>(), rows, classes, scratch);
  TL_CUDA_CHECK_LAUNCH("count_correct_kernel");
  CountScratch result;
  TL_CUDA_CHECK(cudaMemcpyAsync(&result, scratch, sizeof result, cudaMemcpyDeviceToHost, stream));
  TL_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (result.first_bad != kNoBadLabel) {
    int64_t label = 0;  // the error path only: one more copy for the value to name
    TL_CUDA_CHECK(cudaMemcpyAsync(&label, labels.data<int64_t>() + result.first_bad, sizeof label,
                                  cudaMemcpyDeviceToHost, stream));
    TL_CUDA_CHECK(cudaStreamSynchronize(stream));
    throw Error(str(op, ": label ", label, " at index ", result.first_bad, " is outside [0, ", classes,
                    ") for logits ", shape_str(logits.shape())));
  }
  return static_cast<int64_t>(result.correct);
}

}  // namespace tl::cuda
