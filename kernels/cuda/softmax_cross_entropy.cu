// CUDA twin of the fused softmax cross-entropy and of the row-wise softmax.
// One kernel does a row's whole work: max, max-subtracted log-sum-exp, the row's loss (with label
// smoothing) and, when asked, dlogits = (softmax - target)/N (or, for softmax, the probabilities).
// Rows go to one warp each when narrow, one block each when wide. A second one-block kernel sums the
// row losses in a fixed order (deterministic) and finds the first bad label; the host fetches both
// with one async copy and one stream sync.
// The row math is done in double from the float logits, as the CPU twin does (the header's
// contract): the loss of a confidently right row is log(1 + tiny), which float would round to 0.
#include <cmath>
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"
#include "kernels/softmax_cross_entropy.h"

namespace tl::cuda {

namespace {

constexpr int kWarp = 32;
// Rows of at most this many classes get a warp each (a lane handles <= 8 classes); wider rows a block.
constexpr int64_t kMaxClassesPerWarpRow = 256;

struct Max {
  template <class T> __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct Min {
  template <class T> __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};
struct Sum {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};

// Butterfly over a full warp: every lane ends with the result. blockDim.x is a multiple of 32.
template <class T, class Op>
__device__ T warp_reduce(T value, Op op) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

// Every thread of the block ends with the result, combined in a fixed order (deterministic).
// scratch: __shared__ T[32]. The leading barrier lets a block call this repeatedly with one scratch.
template <class T, class Op>
__device__ T block_reduce(T value, Op op, T* scratch) {
  value = warp_reduce(value, op);
  const int warps = blockDim.x / kWarp;
  __syncthreads();  // every thread has read the previous reduction's scratch
  if (threadIdx.x % kWarp == 0) scratch[threadIdx.x / kWarp] = value;
  __syncthreads();
  T result = scratch[0];
  for (int w = 1; w < warps; ++w) result = op(result, scratch[w]);
  return result;
}

// What one row needs. labels == nullptr: plain softmax (no loss, every target 0, divisor 1).
struct RowJob {
  const float* logits;
  int64_t rows;
  int64_t classes;
  const int64_t* labels;
  double keep;        // 1 - label_smoothing
  double on_target;   // target of the labelled class
  double off_target;  // target of every other class
  float* out;         // dlogits or probabilities; null when not asked for
  double out_divisor; // N for dlogits, 1 for probabilities
  double* row_loss;   // [rows]; null for plain softmax
};

// A warp per row: lanes 0..31 share row (blockIdx.x * warps per block + warp).
struct WarpPerRowGroup {
  __device__ int64_t first_row() const { return blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp; }
  __device__ int64_t row_stride() const { return int64_t(gridDim.x) * (blockDim.x / kWarp); }
  __device__ int lane() const { return threadIdx.x % kWarp; }
  __device__ int width() const { return kWarp; }
  template <class Op> __device__ double reduce(double v, Op op) const { return warp_reduce(v, op); }
  double* scratch;  // unused
};

// A block per row.
struct BlockPerRowGroup {
  __device__ int64_t first_row() const { return blockIdx.x; }
  __device__ int64_t row_stride() const { return gridDim.x; }
  __device__ int lane() const { return threadIdx.x; }
  __device__ int width() const { return blockDim.x; }
  template <class Op> __device__ double reduce(double v, Op op) const { return block_reduce(v, op, scratch); }
  double* scratch;  // __shared__ double[32]
};

// The row loop is uniform across the group (a warp or the block), so its reductions and barriers
// are reached by every thread of the group.
template <class Group>
__device__ void process_rows(const RowJob& job, Group group) {
  const int64_t classes = job.classes;
  for (int64_t row = group.first_row(); row < job.rows; row += group.row_stride()) {
    const float* z = job.logits + row * classes;
    // Pass 1: the row's max (exact in any order).
    double peak = -INFINITY;
    for (int64_t c = group.lane(); c < classes; c += group.width()) peak = fmax(peak, double(z[c]));
    peak = group.reduce(peak, Max{});
    // Pass 2: sum exp(z - peak) and, for the smoothing term, sum (z - peak).
    double sum_exp = 0, sum_shifted = 0;
    for (int64_t c = group.lane(); c < classes; c += group.width()) {
      double shifted = double(z[c]) - peak;
      sum_exp += exp(shifted);
      sum_shifted += shifted;
    }
    const int64_t label = job.labels ? job.labels[row] : -1;
    const bool labelled = label >= 0 && label < classes;  // a bad label is reported by the batch kernel
    // Read before the reductions: when dlogits is the logits tensor itself (the CPU twin handles that),
    // threads past the last reduction are already overwriting this row in pass 3.
    const double z_label = job.row_loss && labelled ? double(z[label]) : 0.0;
    sum_exp = group.reduce(sum_exp, Sum{});
    const double log_sum = log(sum_exp);
    if (job.row_loss) {
      sum_shifted = group.reduce(sum_shifted, Sum{});
      // As the CPU twin: log_sum - (1-s) (z_y - peak) - (s/C) sum_c (z_c - peak).
      if (group.lane() == 0)
        job.row_loss[row] = labelled ? log_sum - job.keep * (z_label - peak) - job.off_target * sum_shifted : 0.0;
    }
    // Pass 3: (softmax - target) / divisor, rounded once to float.
    if (job.out) {
      float* out = job.out + row * classes;
      for (int64_t c = group.lane(); c < classes; c += group.width()) {
        double p = exp(double(z[c]) - peak - log_sum);
        double target = c == label ? job.on_target : job.off_target;
        out[c] = float((p - target) / job.out_divisor);
      }
    }
  }
}

__global__ void softmax_rows_warp_kernel(RowJob job) { process_rows(job, WarpPerRowGroup{nullptr}); }

__global__ void softmax_rows_block_kernel(RowJob job) {
  __shared__ double scratch[kWarp];
  process_rows(job, BlockPerRowGroup{scratch});
}

// What the host reads back after the sync.
struct BatchSummary {
  double mean_loss;
  long long first_bad_index;  // -1 when every label is in [0, classes)
  long long bad_label;
};

// One block: the mean of the row losses (fixed summation order) and the first out-of-range label.
__global__ void batch_summary_kernel(const double* row_loss, const int64_t* labels, int64_t rows, int64_t classes,
                                     BatchSummary* summary) {
  __shared__ double sum_scratch[kWarp];
  __shared__ long long index_scratch[kWarp];
  constexpr long long kNone = 0x7fffffffffffffffLL;
  double sum = 0;
  long long first_bad = kNone;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    sum += row_loss[i];
    const int64_t label = labels[i];
    if ((label < 0 || label >= classes) && i < first_bad) first_bad = i;
  }
  sum = block_reduce(sum, Sum{}, sum_scratch);
  first_bad = block_reduce(first_bad, Min{}, index_scratch);
  if (threadIdx.x == 0) {
    summary->mean_loss = sum / double(rows);
    summary->first_bad_index = first_bad == kNone ? -1 : first_bad;
    summary->bad_label = first_bad == kNone ? 0 : labels[first_bad];
  }
}

bool warp_per_row(RowMapping mapping, int64_t classes) {
  if (mapping == RowMapping::Automatic) return classes <= kMaxClassesPerWarpRow;
  return mapping == RowMapping::WarpPerRow;
}

void launch_rows(Context& ctx, const RowJob& job, RowMapping mapping) {
  cudaStream_t stream = ctx.cuda().stream;
  if (warp_per_row(mapping, job.classes)) {
    constexpr int rows_per_block = kThreadsPerBlock / kWarp;
    softmax_rows_warp_kernel<<<grid_for(job.rows, rows_per_block), kThreadsPerBlock, 0, stream>>>(job);
    TL_CUDA_CHECK_LAUNCH("softmax_rows_warp_kernel");
  } else {
    softmax_rows_block_kernel<<<grid_for(job.rows, 1), kThreadsPerBlock, 0, stream>>>(job);
    TL_CUDA_CHECK_LAUNCH("softmax_rows_block_kernel");
  }
}

}  // namespace

double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits) {
  return softmax_cross_entropy(ctx, logits, labels, label_smoothing, dlogits, RowMapping::Automatic);
}

double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits, RowMapping mapping) {
  const char* op = "softmax_cross_entropy";
  check_f32(op, logits);
  TL_CHECK(labels.is_cuda() && labels.dtype() == DType::I64, op, ": labels must be an I64 CUDA tensor, got ",
           labels.describe());
  if (dlogits) check_f32(op, *dlogits);
  const int64_t rows = logits.size(0), classes = logits.size(1);
  const double s = label_smoothing;
  const double off_target = s / double(classes);  // the CPU twin's targets, computed the same way
  const double on_target = 1.0 - s + off_target;

  // Workspace: the summary, then one double per row (the summary's size keeps them 8-byte aligned).
  static_assert(sizeof(BatchSummary) % alignof(double) == 0);
  CudaState& cuda = ctx.cuda();
  char* workspace = static_cast<char*>(cuda.workspace(sizeof(BatchSummary) + size_t(rows) * sizeof(double)));
  auto* summary = reinterpret_cast<BatchSummary*>(workspace);
  auto* row_loss = reinterpret_cast<double*>(workspace + sizeof(BatchSummary));

  RowJob job{logits.data<float>(), rows,       classes,   labels.data<int64_t>(),
             1.0 - s,              on_target,  off_target, dlogits ? dlogits->data<float>() : nullptr,
             double(rows),         row_loss};
  launch_rows(ctx, job, mapping);
  batch_summary_kernel<<<1, kThreadsPerBlock, 0, cuda.stream>>>(row_loss, labels.data<int64_t>(), rows, classes,
                                                                summary);
  TL_CUDA_CHECK_LAUNCH("batch_summary_kernel");

  BatchSummary host{};
  TL_CUDA_CHECK(cudaMemcpyAsync(&host, summary, sizeof host, cudaMemcpyDeviceToHost, cuda.stream));
  TL_CUDA_CHECK(cudaStreamSynchronize(cuda.stream));
  if (host.first_bad_index >= 0) check_label(host.bad_label, host.first_bad_index, logits);  // throws
  return host.mean_loss;
}

void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities) {
  softmax(ctx, logits, probabilities, RowMapping::Automatic);
}

void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities, RowMapping mapping) {
  check_f32("softmax", logits);
  check_f32("softmax", probabilities);
  RowJob job{logits.data<float>(), logits.size(0), logits.size(1), nullptr, 1.0, 0.0, 0.0,
             probabilities.data<float>(), 1.0, nullptr};
  launch_rows(ctx, job, mapping);
}

}  // namespace tl::cuda
