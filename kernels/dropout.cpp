#include "kernels/dropout.h"

#include "engine/tensor.h"

namespace tl {

void check_dropout_probability(const char* who, double p) {
  TL_CHECK(p >= 0.0 && p < 1.0, who, ": dropout probability ", p, " must be in [0, 1)");
}

void dropout_forward(Context& ctx, const Tensor& x, double p, uint64_t seed, Tensor& y) {
  check_dropout_probability("dropout_forward", p);
  check_same_shape("dropout_forward", x, y);
  check_same_device_dtype("dropout_forward", x, y);
  if (x.is_cuda()) return cuda::dropout_forward(ctx, x, p, seed, y);
  cpu::dropout_forward(ctx, x, p, seed, y);
}

void dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t seed, Tensor& dx) {
  check_dropout_probability("dropout_backward", p);
  check_same_shape("dropout_backward", dy, dx);
  check_same_device_dtype("dropout_backward", dy, dx);
  if (dy.is_cuda()) return cuda::dropout_backward(ctx, dy, p, seed, dx);
  cpu::dropout_backward(ctx, dy, p, seed, dx);
}

}  // namespace tl
