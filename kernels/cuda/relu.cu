// CUDA twin of ReLU. The comparison is the CPU twin's (x > 0 ? x : 0, so NaN and -0 give +0, which
// fmaxf does not promise for -0), so results are bit-identical. When every pointer is 16-byte aligned
// the kernels move float4s with a scalar tail for n % 4; otherwise they use scalar loads.
// y may be x (and dx may be dy or y): each element is read before the thread that owns it writes it.
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"
#include "kernels/relu.h"

namespace tl::cuda {

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

__device__ __forceinline__ float relu(float v) { return v > 0.0f ? v : 0.0f; }
__device__ __forceinline__ float relu_grad(float y, float g) { return y > 0.0f ? g : 0.0f; }

template <bool kVector>
__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t scalar_begin = 0;
  if constexpr (kVector) {
    const int64_t vectors = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = first; i < vectors; i += stride) {
      float4 v = x4[i];
      y4[i] = make_float4(relu(v.x), relu(v.y), relu(v.z), relu(v.w));
    }
    scalar_begin = vectors * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) y[i] = relu(x[i]);
}

template <bool kVector>
__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t scalar_begin = 0;
  if constexpr (kVector) {
    const int64_t vectors = n / 4;
    const float4* y4 = reinterpret_cast<const float4*>(y);
    const float4* g4 = reinterpret_cast<const float4*>(dy);
    float4* dx4 = reinterpret_cast<float4*>(dx);
    for (int64_t i = first; i < vectors; i += stride) {
      float4 v = y4[i], g = g4[i];
      dx4[i] = make_float4(relu_grad(v.x, g.x), relu_grad(v.y, g.y), relu_grad(v.z, g.z), relu_grad(v.w, g.w));
    }
    scalar_begin = vectors * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) dx[i] = relu_grad(y[i], dy[i]);
}

}  // namespace

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  check_f32("relu_forward", x);
  const int64_t n = x.numel();
  if (n == 0) return;
  const float* in = x.data<float>();
  float* out = y.data<float>();
  cudaStream_t stream = ctx.cuda().stream;
  if (aligned16(in) && aligned16(out)) {
    // One thread per float4, and at least one block for a tail of up to 3 elements.
    relu_forward_kernel<true><<<grid_for(n / 4 + 1), kThreadsPerBlock, 0, stream>>>(in, out, n);
    TL_CUDA_CHECK_LAUNCH("relu_forward_kernel<float4>");
  } else {
    relu_forward_kernel<false><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(in, out, n);
    TL_CUDA_CHECK_LAUNCH("relu_forward_kernel<scalar>");
  }
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_f32("relu_backward", y);
  const int64_t n = y.numel();
  if (n == 0) return;
  const float* out = y.data<float>();
  const float* g = dy.data<float>();
  float* gi = dx.data<float>();
  cudaStream_t stream = ctx.cuda().stream;
  if (aligned16(out) && aligned16(g) && aligned16(gi)) {
    relu_backward_kernel<true><<<grid_for(n / 4 + 1), kThreadsPerBlock, 0, stream>>>(out, g, gi, n);
    TL_CUDA_CHECK_LAUNCH("relu_backward_kernel<float4>");
  } else {
    relu_backward_kernel<false><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(out, g, gi, n);
    TL_CUDA_CHECK_LAUNCH("relu_backward_kernel<scalar>");
  }
}

}  // namespace tl::cuda
