#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"
#include "kernels/relu.h"

namespace tl::cuda {

namespace {
__global__ void relu_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = fmaxf(x[i], 0.0f);
}

__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
}  // namespace

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  check_f32("relu_forward", x);
  if (x.numel() == 0) return;
  relu_forward_kernel<<<grid_for(x.numel()), kThreadsPerBlock, 0, ctx.cuda().stream>>>(x.data<float>(),
                                                                                      y.data<float>(), x.numel());
  TL_CUDA_CHECK_LAUNCH("relu_forward_kernel");
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_f32("relu_backward", y);
  if (y.numel() == 0) return;
  relu_backward_kernel<<<grid_for(y.numel()), kThreadsPerBlock, 0, ctx.cuda().stream>>>(
      y.data<float>(), dy.data<float>(), dx.data<float>(), y.numel());
  TL_CUDA_CHECK_LAUNCH("relu_backward_kernel");
}

}  // namespace tl::cuda
