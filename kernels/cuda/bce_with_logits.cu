// Binary cross-entropy with logits on CUDA: one pass computes the loss terms (block sums), the
// gradient and the target check; a one-block kernel adds the block sums in a fixed order (the loss
// is the same bits on every run); one copy brings the loss and the first bad index to the host.
// Arithmetic in double, with the CPU twin's expressions, as that twin does.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/bce_with_logits.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"

namespace tl::cuda {

namespace {

constexpr int kMaxBlocks = 1024;  // 262144 threads: plenty for a batch of scalars
constexpr unsigned long long kNoBadTarget = ~0ull;

// Device scratch (the context's workspace). The first two fields are what the host reads back.
struct BceScratch {
  unsigned long long first_bad;  // smallest index of a target outside [0,1] (or NaN); kNoBadTarget if none
  double loss;
  double partial[kMaxBlocks];  // one sum per block of the first kernel
};

// Sum over the block (blockDim.x == kThreadsPerBlock, a power of two); every thread gets the total.
__device__ double block_sum(double value, double* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreadsPerBlock / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  return shared[0];
}

__global__ void bce_terms_kernel(const float* logits, const float* targets, float* dlogits, int64_t n,
                                 BceScratch* scratch) {
  __shared__ double shared[kThreadsPerBlock];
  double sum = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    double zi = logits[i], ti = targets[i];
    // Written so that NaN fails too, as the CPU check does. atomicMin: the smallest index wins
    // whatever the order threads get here, so the error names the same element as on the CPU.
    if (!(ti >= 0 && ti <= 1)) atomicMin(&scratch->first_bad, static_cast<unsigned long long>(i));
    double e = exp(-fabs(zi));
    sum += (zi < 0.0 ? 0.0 : zi) - zi * ti + log1p(e);  // std::max(zi, 0.0), NaN propagating alike
    if (dlogits) {
      double sigmoid = zi >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      dlogits[i] = static_cast<float>((sigmoid - ti) / double(n));
    }
  }
  double total = block_sum(sum, shared);
  if (threadIdx.x == 0) scratch->partial[blockIdx.x] = total;
}

__global__ void bce_mean_kernel(BceScratch* scratch, int blocks, int64_t n) {
  __shared__ double shared[kThreadsPerBlock];
  double sum = 0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) sum += scratch->partial[b];
  double total = block_sum(sum, shared);
  if (threadIdx.x == 0) scratch->loss = total / double(n);
}

}  // namespace

double bce_with_logits(Context& ctx, const Tensor& logits, const Tensor& targets, Tensor* dlogits) {
  const char* op = "bce_with_logits";
  check_f32(op, logits);
  check_f32(op, targets);
  if (dlogits) check_f32(op, *dlogits);
  int64_t n = logits.numel();  // >= 1, checked by the entry point
  cudaStream_t stream = ctx.cuda().stream;
  auto* scratch = static_cast<BceScratch*>(ctx.cuda().workspace(sizeof(BceScratch)));
  TL_CUDA_CHECK(cudaMemsetAsync(&scratch->first_bad, 0xFF, sizeof scratch->first_bad, stream));
  unsigned blocks = grid_for(n);
  if (blocks > unsigned(kMaxBlocks)) blocks = kMaxBlocks;
  bce_terms_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(logits.data<float>(), targets.data<float>(),
                                                            dlogits ? dlogits->data<float>() : nullptr, n, scratch);
  TL_CUDA_CHECK_LAUNCH("bce_terms_kernel");
  bce_mean_kernel<<<1, kThreadsPerBlock, 0, stream>>>(scratch, int(blocks), n);
  TL_CUDA_CHECK_LAUNCH("bce_mean_kernel");

  struct {
    unsigned long long first_bad;
    double loss;
  } result;
  static_assert(sizeof result == offsetof(BceScratch, partial));
  TL_CUDA_CHECK(cudaMemcpyAsync(&result, scratch, sizeof result, cudaMemcpyDeviceToHost, stream));
  TL_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (result.first_bad != kNoBadTarget) {
    // The error path only: one more copy for the value to name (dlogits has been written regardless).
    float value = 0;
    TL_CUDA_CHECK(cudaMemcpyAsync(&value, targets.data<float>() + result.first_bad, sizeof value,
                                  cudaMemcpyDeviceToHost, stream));
    TL_CUDA_CHECK(cudaStreamSynchronize(stream));
    throw Error(str(op, ": target ", double(value), " at index ", result.first_bad, " is outside [0, 1]"));
  }
  return result.loss;
}

}  // namespace tl::cuda
