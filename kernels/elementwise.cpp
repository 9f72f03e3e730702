#include "kernels/elementwise.h"

namespace tl {

void add_forward(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  check_same_shape("add_forward", a, b);
  check_same_shape("add_forward", a, y);
  check_same_device_dtype("add_forward", a, b);
  check_same_device_dtype("add_forward", a, y);
  if (a.is_cuda()) return cuda::add_forward(ctx, a, b, y);
  cpu::add_forward(ctx, a, b, y);
}

void add_into(Context& ctx, Tensor& y, const Tensor& x) {
  check_same_shape("add_into", y, x);
  check_same_device_dtype("add_into", y, x);
  if (y.is_cuda()) return cuda::add_into(ctx, y, x);
  cpu::add_into(ctx, y, x);
}

void scale_into(Context& ctx, Tensor& y, double alpha) {
  TL_CHECK(y.defined(), "scale_into: undefined tensor");
  if (y.is_cuda()) return cuda::scale_into(ctx, y, alpha);
  cpu::scale_into(ctx, y, alpha);
}

}  // namespace tl
