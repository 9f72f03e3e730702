#pragma once
#include "engine/layer.h"

namespace tl {

// torch.nn.Dropout(p): identity in Eval; in Train each forward draws a fresh seed from ctx.rng() and
// zeroes element i unless its hashed uniform is >= p, scaling survivors by 1/(1-p). Only the seed is
// kept for backward, which redraws the same mask.
class Dropout : public Layer {
 public:
  explicit Dropout(double p = 0.5);
  double p() const { return p_; }

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  double p_;
  bool pending_ = false;  // a training forward saved a seed that backward has not used yet
  uint64_t seed_ = 0;
  Shape shape_;
};

}  // namespace tl
