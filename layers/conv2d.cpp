#include "layers/conv2d.h"

#include <cmath>

#include "engine/context.h"

namespace tl {

namespace {
constexpr uint64_t kConstructionSeed = 0;
}  // namespace

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride, int64_t padding,
               bool has_bias)
    : Layer("Conv2d"),
      weight("weight", Tensor::zeros({out_channels, in_channels, kernel_size, kernel_size})),
      params_{stride, stride, padding, padding} {
  TL_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0 && stride > 0 && padding >= 0,
           "Conv2d(in ", in_channels, ", out ", out_channels, ", kernel ", kernel_size, ", stride ", stride,
           ", padding ", padding, "): sizes must be positive and padding non-negative");
  if (has_bias) bias.emplace("bias", Tensor::zeros({out_channels}));
  Rng rng(kConstructionSeed);
  reset_parameters(rng);
}

std::vector<Parameter*> Conv2d::local_parameters() {
  if (bias) return {&weight, &*bias};
  return {&weight};
}

void Conv2d::reset_parameters(Rng& rng) {
  const Shape& w = weight.value.shape();
  double bound = 1.0 / std::sqrt(static_cast<double>(w[1] * w[2] * w[3]));
  fill_uniform(weight, rng, bound);
  if (bias) fill_uniform(*bias, rng, bound);
}

Tensor Conv2d::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  const Tensor& w = weight.value;
  check_input(*this, x, 4, "N,C,H,W");
  TL_CHECK(x.size(1) == w.size(1), "input ", shape_str(x.shape()), " has ", x.size(1), " channels but weight ",
           shape_str(w.shape()), " expects ", w.size(1));
  Shape out{x.size(0), w.size(0), conv2d_output_size(x.size(2), w.size(2), params_.stride_h, params_.pad_h),
            conv2d_output_size(x.size(3), w.size(3), params_.stride_w, params_.pad_w)};
  Tensor y = Tensor::empty(ctx, out, x.dtype(), x.device());
  conv2d_forward(ctx, x, w, bias ? &bias->value : nullptr, y, params_);
  saved_ = saves_for_backward(mode);
  x_shape_ = x.shape();
  x_ = saved_ && weight.trainable() ? x : Tensor();
  return y;
}

Tensor Conv2d::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(saved_, kNoSavedActivations);
  bool bias_trains = bias && bias->trainable();
  if (weight.trainable()) {
    TL_CHECK(x_.defined(), "weight made trainable between forward and backward: its input was not kept");
    conv2d_backward_filter(ctx, x_, dy, weight.grad(ctx), bias_trains ? &bias->grad(ctx) : nullptr, params_);
  } else if (bias_trains) {
    conv2d_backward_bias(ctx, dy, bias->grad(ctx));
  }
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty(ctx, x_shape_, dy.dtype(), dy.device());
    conv2d_backward_data(ctx, dy, weight.value, dx, params_);
  }
  x_ = Tensor();
  saved_ = false;
  return dx;
}

}  // namespace tl
