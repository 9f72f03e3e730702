#pragma once
#include "engine/layer.h"

namespace tl {

// torch.nn.Flatten(): [N, d1, d2, ...] -> [N, d1*d2*...] as a view sharing the input's storage (any
// device, no kernel); backward reshapes dy back to the input's shape, again as a view.
class Flatten : public Layer {
 public:
  Flatten() : Layer("Flatten") {}

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  Shape input_shape_;  // empty when no training forward is pending
};

}  // namespace tl
