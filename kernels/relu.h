#pragma once
// ReLU. Entry points dispatch on the tensor's device to the cpu:: or cuda:: twin.
#include "engine/tensor.h"

namespace tl {
class Context;

// y = max(x, 0). x and y: same shape, dtype and device (y may alias x).
void relu_forward(Context& ctx, const Tensor& x, Tensor& y);
// dx = dy where y > 0, else 0. Overwrites dx.
void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx);

namespace cpu {
void relu_forward(Context& ctx, const Tensor& x, Tensor& y);
void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx);
}  // namespace cpu
namespace cuda {
void relu_forward(Context& ctx, const Tensor& x, Tensor& y);
void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx);
}  // namespace cuda
}  // namespace tl
