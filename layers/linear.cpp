#include "layers/linear.h"

#include <cmath>

#include "engine/context.h"
#include "kernels/linear.h"

namespace tl {

namespace {
constexpr uint64_t kConstructionSeed = 0;
}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias)
    : Layer("Linear"), weight("weight", Tensor::zeros({out_features, in_features})) {
  TL_CHECK(in_features > 0 && out_features > 0, "Linear(in ", in_features, ", out ", out_features,
           "): sizes must be positive");
  if (has_bias) bias.emplace("bias", Tensor::zeros({out_features}));
  Rng rng(kConstructionSeed);
  reset_parameters(rng);
}

std::vector<Parameter*> Linear::local_parameters() {
  if (bias) return {&weight, &*bias};
  return {&weight};
}

void Linear::reset_parameters(Rng& rng) {
  double bound = 1.0 / std::sqrt(static_cast<double>(weight.value.size(1)));
  fill_uniform(weight, rng, bound);
  if (bias) fill_uniform(*bias, rng, bound);
}

Tensor Linear::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  const Tensor& w = weight.value;
  TL_CHECK(x.dim() == 2 && x.size(1) == w.size(1), "expected input [N,", w.size(1), "] for weight ",
           shape_str(w.shape()), ", got ", x.describe(), x.dim() > 2 ? " (flatten it first)" : "");
  Tensor y = Tensor::empty(ctx, {x.size(0), w.size(0)}, x.dtype(), x.device());
  linear_forward(ctx, x, w, bias ? &bias->value : nullptr, y);
  saved_ = saves_for_backward(mode);
  x_shape_ = x.shape();
  x_ = saved_ && weight.trainable() ? x : Tensor();
  return y;
}

Tensor Linear::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(saved_, kNoSavedActivations);
  bool bias_trains = bias && bias->trainable();
  if (weight.trainable()) {
    TL_CHECK(x_.defined(), "weight made trainable between forward and backward: its input was not kept");
    linear_backward_weight(ctx, x_, dy, weight.grad(ctx), bias_trains ? &bias->grad(ctx) : nullptr);
  } else if (bias_trains) {
    linear_backward_bias(ctx, dy, bias->grad(ctx));
  }
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty(ctx, x_shape_, dy.dtype(), dy.device());
    linear_backward_data(ctx, dy, weight.value, dx);
  }
  x_ = Tensor();
  saved_ = false;
  return dx;
}

}  // namespace tl
