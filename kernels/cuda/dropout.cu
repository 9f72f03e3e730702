// CUDA twin of dropout. The mask is the same stateless counter-based draw as the CPU twin's
// (dropout_keeps over engine/rng.h's splitmix64 hash of (seed, element index)): our "Philox or
// equivalent". Each element's keep/drop is a pure function of (seed, index), so there is no device
// RNG state, any thread can draw any element, backward redraws the mask instead of storing it, and
// the CPU and CUDA twins agree bit for bit.
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"
#include "kernels/dropout.h"

namespace tl::cuda {

namespace {

// One float multiply by the float scale, as the CPU twin does (no fused operation to round differently).
__device__ __forceinline__ float masked(float value, uint64_t seed, uint64_t index, double p, float scale) {
  return dropout_keeps(seed, index, p) ? value * scale : 0.0f;
}

// out[i] = in[i] * mask(i) * scale over a grid-stride loop. in and out may alias (each element is
// read and then written by the same thread), so no __restrict__.
__global__ void dropout_scalar_kernel(const float* in, float* out, int64_t n, double p, float scale, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = masked(in[i], seed, uint64_t(i), p, scale);
}

// Same map, four elements per load/store; both pointers 16-byte aligned. The last n % 4 elements
// are done one by one by the first threads of the grid.
__global__ void dropout_vec4_kernel(const float* in, float* out, int64_t n, double p, float scale, uint64_t seed) {
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t vectors = n / 4;
  const float4* in4 = reinterpret_cast<const float4*>(in);
  float4* out4 = reinterpret_cast<float4*>(out);
  for (int64_t v = first; v < vectors; v += stride) {
    float4 a = in4[v];
    const uint64_t i = uint64_t(v) * 4;
    a.x = masked(a.x, seed, i, p, scale);
    a.y = masked(a.y, seed, i + 1, p, scale);
    a.z = masked(a.z, seed, i + 2, p, scale);
    a.w = masked(a.w, seed, i + 3, p, scale);
    out4[v] = a;
  }
  for (int64_t i = vectors * 4 + first; i < n; i += stride) out[i] = masked(in[i], seed, uint64_t(i), p, scale);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Forward and backward are the same map: out = in * mask * scale.
void apply_mask(Context& ctx, const char* op, const Tensor& in, double p, uint64_t seed, Tensor& out) {
  check_f32(op, in);
  check_f32(op, out);
  const int64_t n = in.numel();
  if (n == 0) return;
  // In double, rounded once to float: the CPU twin's scale exactly.
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  const float* src = in.data<float>();
  float* dst = out.data<float>();
  cudaStream_t stream = ctx.cuda().stream;
  if (aligned16(src) && aligned16(dst)) {
    dropout_vec4_kernel<<<grid_for(n / 4), kThreadsPerBlock, 0, stream>>>(src, dst, n, p, scale, seed);
    TL_CUDA_CHECK_LAUNCH("dropout_vec4_kernel");
  } else {
    dropout_scalar_kernel<<<grid_for(n), kThreadsPerBlock, 0, stream>>>(src, dst, n, p, scale, seed);
    TL_CUDA_CHECK_LAUNCH("dropout_scalar_kernel");
  }
}

}  // namespace

void dropout_forward(Context& ctx, const Tensor& x, double p, uint64_t seed, Tensor& y) {
  apply_mask(ctx, "dropout_forward", x, p, seed, y);
}

void dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t seed, Tensor& dx) {
  apply_mask(ctx, "dropout_backward", dy, p, seed, dx);
}

}  // namespace tl::cuda
