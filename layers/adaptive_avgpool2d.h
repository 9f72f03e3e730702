#pragma once
#include "engine/layer.h"

namespace tl {

// torch.nn.AdaptiveAvgPool2d((out_h, out_w)); (1, 1) is the global average pool of ResNet.
class AdaptiveAvgPool2d : public Layer {
 public:
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w);
  int64_t out_h() const { return out_h_; }
  int64_t out_w() const { return out_w_; }

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  int64_t out_h_, out_w_;
  Shape input_shape_;  // all backward needs; empty when no training forward is pending
};

}  // namespace tl
