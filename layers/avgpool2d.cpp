#include "layers/avgpool2d.h"

namespace tl {

AvgPool2d::AvgPool2d(int64_t kernel_size, int64_t stride, int64_t padding)
    : Layer("AvgPool2d"), params_(square_pool_params("AvgPool2d", kernel_size, stride, padding)) {}

Tensor AvgPool2d::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  check_input(*this, x, 4, "[N,C,H,W]");
  Shape out = {x.size(0), x.size(1), pool2d_output_size(x.size(2), params_.kernel_h, params_.stride_h, params_.pad_h),
               pool2d_output_size(x.size(3), params_.kernel_w, params_.stride_w, params_.pad_w)};
  Tensor y = Tensor::empty(ctx, out, x.dtype(), x.device());
  avgpool2d_forward(ctx, x, y, params_);
  input_shape_ = saves_for_backward(mode) ? x.shape() : Shape();
  return y;
}

Tensor AvgPool2d::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(!input_shape_.empty(), kNoSavedActivations);
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty(ctx, input_shape_, dy.dtype(), dy.device());
    avgpool2d_backward(ctx, dy, dx, params_);
  }
  input_shape_.clear();
  return dx;
}

}  // namespace tl
