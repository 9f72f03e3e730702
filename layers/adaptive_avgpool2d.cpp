#include "layers/adaptive_avgpool2d.h"

#include "kernels/pool2d.h"

namespace tl {

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t out_h, int64_t out_w)
    : Layer("AdaptiveAvgPool2d"), out_h_(out_h), out_w_(out_w) {
  TL_CHECK(out_h > 0 && out_w > 0, "AdaptiveAvgPool2d: output size (", out_h, ", ", out_w, ") must be positive");
}

Tensor AdaptiveAvgPool2d::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  check_input(*this, x, 4, "[N,C,H,W]");
  Tensor y = Tensor::empty(ctx, {x.size(0), x.size(1), out_h_, out_w_}, x.dtype(), x.device());
  adaptive_avgpool2d_forward(ctx, x, y);
  input_shape_ = saves_for_backward(mode) ? x.shape() : Shape();
  return y;
}

Tensor AdaptiveAvgPool2d::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(!input_shape_.empty(), kNoSavedActivations);
  Shape expected = {input_shape_[0], input_shape_[1], out_h_, out_w_};
  TL_CHECK(dy.shape() == expected, "gradient ", shape_str(dy.shape()), " expected ", shape_str(expected));
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty(ctx, input_shape_, dy.dtype(), dy.device());
    adaptive_avgpool2d_backward(ctx, dy, dx);
  }
  input_shape_.clear();
  return dx;
}

}  // namespace tl
