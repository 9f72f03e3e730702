#include "layers/dropout.h"

#include "engine/context.h"
#include "kernels/dropout.h"

namespace tl {

Dropout::Dropout(double p) : Layer("Dropout"), p_(p) { check_dropout_probability("Dropout", p); }

Tensor Dropout::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  pending_ = false;
  if (mode == Mode::Eval) return x;  // as F.dropout(training=False): the input itself, no copy
  uint64_t seed = ctx.rng().next_u64();
  Tensor y = Tensor::empty_like(ctx, x);
  dropout_forward(ctx, x, p_, seed, y);
  if (saves_for_backward(mode)) {
    pending_ = true;
    seed_ = seed;
    shape_ = x.shape();
  }
  return y;
}

Tensor Dropout::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(pending_, kNoSavedActivations);
  TL_CHECK(dy.shape() == shape_, "gradient ", shape_str(dy.shape()), " expected ", shape_str(shape_));
  Tensor dx;
  if (need_dx) {
    dx = Tensor::empty_like(ctx, dy);
    dropout_backward(ctx, dy, p_, seed_, dx);
  }
  pending_ = false;
  return dx;
}

}  // namespace tl
