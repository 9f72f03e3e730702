#pragma once
// 2-D convolution (cross-correlation, as PyTorch), NCHW, dilation 1, groups 1. Entry points validate
// shapes and dispatch on the device; the cpu:: twin is im2col + GEMM, the cuda:: twin cuDNN.
#include <cstdint>

#include "engine/tensor.h"

namespace tl {
class Context;

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};

// floor((input + 2 pad - kernel) / stride) + 1; throws when that is not positive.
int64_t conv2d_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t pad);

// x [N,C,H,W], w [O,C,KH,KW], bias [O] or nullptr; y [N,O,OH,OW] is overwritten.
void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                    const Conv2dParams& p);
// dx [N,C,H,W] = gradient of the input; overwritten.
void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p);
// dw [O,C,KH,KW] (and dbias [O] when non-null) ACCUMULATE (+=).
void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                            const Conv2dParams& p);
// dbias [O] += sum of dy over N, OH, OW: for a layer whose weight is frozen but bias trains.
void conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias);

namespace cpu {
void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                    const Conv2dParams& p);
void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p);
void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                            const Conv2dParams& p);
void conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias);
}  // namespace cpu
// cuDNN (kernels/cuda/conv2d.cpp): F32 only; TF32 tensor-core math when ctx.tf32(), strict FP32 otherwise.
namespace cuda {
void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                    const Conv2dParams& p);
void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p);
void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                            const Conv2dParams& p);
void conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias);
}  // namespace cuda
}  // namespace tl
