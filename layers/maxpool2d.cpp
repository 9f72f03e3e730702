#include "layers/maxpool2d.h"

namespace tl {

MaxPool2d::MaxPool2d(int64_t kernel_size, int64_t stride, int64_t padding)
    : Layer("MaxPool2d"), params_(square_pool_params("MaxPool2d", kernel_size, stride, padding)) {}

Tensor MaxPool2d::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  check_input(*this, x, 4, "[N,C,H,W]");
  Shape out = {x.size(0), x.size(1), pool2d_output_size(x.size(2), params_.kernel_h, params_.stride_h, params_.pad_h),
               pool2d_output_size(x.size(3), params_.kernel_w, params_.stride_w, params_.pad_w)};
  Tensor y = Tensor::empty(ctx, out, x.dtype(), x.device());
  Tensor indices = Tensor::empty(ctx, out, DType::I64, x.device());
  maxpool2d_forward(ctx, x, y, indices, params_);
  bool keep = saves_for_backward(mode);
  indices_ = keep ? indices : Tensor();
  input_shape_ = keep ? x.shape() : Shape();
  return y;
}

Tensor MaxPool2d::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(indices_.defined(), kNoSavedActivations);
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty(ctx, input_shape_, dy.dtype(), dy.device());
    maxpool2d_backward(ctx, dy, indices_, dx, params_);  // with the geometry: CUDA gathers instead of scattering
  }
  indices_ = Tensor();
  input_shape_.clear();
  return dx;
}

}  // namespace tl
