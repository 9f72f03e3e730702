#include "layers/relu.h"

#include "kernels/relu.h"

namespace tl {

Tensor ReLU::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  Tensor y = Tensor::empty_like(ctx, x);
  relu_forward(ctx, x, y);
  y_ = saves_for_backward(mode) ? y : Tensor();
  return y;
}

Tensor ReLU::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(y_.defined(), kNoSavedActivations);
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty_like(ctx, dy);
    relu_backward(ctx, y_, dy, dx);
  }
  y_ = Tensor();
  return dx;
}

}  // namespace tl
