#pragma once
#include "engine/layer.h"

namespace tl {

class ReLU : public Layer {
 public:
  ReLU() : Layer("ReLU") {}

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  Tensor y_;  // backward needs only the output's sign
};

}  // namespace tl
