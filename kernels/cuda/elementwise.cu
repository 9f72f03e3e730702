// CUDA twins of add_forward, add_into and scale_into. Each element is one IEEE float add or multiply,
// exactly what the CPU twin does, so the results are bit-identical. When every pointer is 16-byte
// aligned the kernels move float4s (one 16-byte load per operand per four elements) and a scalar tail
// covers n % 4; otherwise (a view starting mid-vector) they fall back to scalar loads.
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"
#include "kernels/elementwise.h"

namespace tl::cuda {

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// out[i] = a[i] + b[i]. out may be a or b (each element is read before the same thread writes it).
// Vectorised: vectors [0, n/4) as float4, then elements [4*(n/4), n) one per thread.
template <bool kVector>
__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t scalar_begin = 0;
  if constexpr (kVector) {
    const int64_t vectors = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t i = first; i < vectors; i += stride) {
      float4 u = a4[i], v = b4[i];
      out4[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
    }
    scalar_begin = vectors * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) out[i] = a[i] + b[i];
}

// y[i] *= alpha.
template <bool kVector>
__global__ void scale_kernel(float* y, float alpha, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t scalar_begin = 0;
  if constexpr (kVector) {
    const int64_t vectors = n / 4;
    float4* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = first; i < vectors; i += stride) {
      float4 u = y4[i];
      y4[i] = make_float4(u.x * alpha, u.y * alpha, u.z * alpha, u.w * alpha);
    }
    scalar_begin = vectors * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) y[i] = y[i] * alpha;
}

void launch_add(Context& ctx, const float* a, const float* b, float* out, int64_t n) {
  if (n == 0) return;
  cudaStream_t stream = ctx.cuda().stream;
  if (aligned16(a) && aligned16(b) && aligned16(out)) {
    // One thread per float4 (at least one thread per tail element: n < 4 gives n / 4 == 0 vectors).
    add_kernel<true><<<grid_for(n / 4 + 1), kThreadsPerBlock, 0, stream>>>(a, b, out, n);
    TL_CUDA_CHECK_LAUNCH("add_kernel<float4>");
  } else {
    add_kernel<false><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(a, b, out, n);
    TL_CUDA_CHECK_LAUNCH("add_kernel<scalar>");
  }
}

}  // namespace

void add_forward(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  check_f32("add_forward", a);
  launch_add(ctx, a.data<float>(), b.data<float>(), y.data<float>(), a.numel());
}

void add_into(Context& ctx, Tensor& y, const Tensor& x) {
  check_f32("add_into", y);
  launch_add(ctx, y.data<float>(), x.data<float>(), y.data<float>(), y.numel());  // y + x, as the CPU twin
}

void scale_into(Context& ctx, Tensor& y, double alpha) {
  check_f32("scale_into", y);
  const int64_t n = y.numel();
  if (n == 0) return;
  const float a = static_cast<float>(alpha);  // rounded to the tensor's type first, as the CPU twin does
  float* p = y.data<float>();
  cudaStream_t stream = ctx.cuda().stream;
  if (aligned16(p)) {
    scale_kernel<true><<<grid_for(n / 4 + 1), kThreadsPerBlock, 0, stream>>>(p, a, n);
    TL_CUDA_CHECK_LAUNCH("scale_kernel<float4>");
  } else {
    scale_kernel<false><<<grid_for(n), kThreadsPerBlock, 0, stream>>>(p, a, n);
    TL_CUDA_CHECK_LAUNCH("scale_kernel<scalar>");
  }
}

}  // namespace tl::cuda
