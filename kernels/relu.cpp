#include "kernels/relu.h"

namespace tl {

void relu_forward(Context& ctx, const Tensor& x, Tensor& y) {
  check_same_shape("relu_forward", x, y);
  check_same_device_dtype("relu_forward", x, y);
  if (x.is_cuda()) return cuda::relu_forward(ctx, x, y);
  cpu::relu_forward(ctx, x, y);
}

void relu_backward(Context& ctx, const Tensor& y, const Tensor& dy, Tensor& dx) {
  check_same_shape("relu_backward", y, dy);
  check_same_shape("relu_backward", y, dx);
  check_same_device_dtype("relu_backward", y, dy);
  check_same_device_dtype("relu_backward", y, dx);
  if (y.is_cuda()) return cuda::relu_backward(ctx, y, dy, dx);
  cpu::relu_backward(ctx, y, dy, dx);
}

}  // namespace tl
