#include "kernels/elementwise.h"

#include "kernels/backend.h"

namespace tl {

void add_forward(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  check_same_shape("add_forward", a, b);
  check_same_shape("add_forward", a, y);
  check_same_device_dtype("add_forward", a, b);
  check_same_device_dtype("add_forward", a, y);
  require_cpu("add_forward", a);
  cpu::add_forward(ctx, a, b, y);
}

void add_into(Context& ctx, Tensor& y, const Tensor& x) {
  check_same_shape("add_into", y, x);
  check_same_device_dtype("add_into", y, x);
  require_cpu("add_into", y);
  cpu::add_into(ctx, y, x);
}

void scale_into(Context& ctx, Tensor& y, double alpha) {
  TL_CHECK(y.defined(), "scale_into: undefined tensor");
  require_cpu("scale_into", y);
  cpu::scale_into(ctx, y, alpha);
}

}  // namespace tl
