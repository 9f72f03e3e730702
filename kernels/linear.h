#pragma once
// Fully connected layer y = x w^T + b with PyTorch's weight layout [out, in]. Entry points validate
// shapes and dispatch on the device; the cpu:: twin is one GEMM per call, the cuda:: twin cuBLAS.
#include "engine/tensor.h"

namespace tl {
class Context;

// x [N,in], w [out,in], bias [out] or nullptr; y [N,out] is overwritten.
void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
// dx [N,in] = dy w; overwritten.
void linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx);
// dw [out,in] += dy^T x, and dbias [out] += column sums of dy when non-null: ACCUMULATED.
void linear_backward_weight(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias);
// dbias [out] += column sums of dy: for a layer whose weight is frozen but bias trains.
void linear_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias);

namespace cpu {
void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
void linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx);
void linear_backward_weight(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias);
void linear_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias);
}  // namespace cpu
// cuBLAS (kernels/cuda/linear.cpp): F32 only, strict FP32 math (ctx.tf32() does not apply, as in PyTorch).
namespace cuda {
void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);
void linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx);
void linear_backward_weight(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias);
void linear_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias);
}  // namespace cuda
}  // namespace tl
