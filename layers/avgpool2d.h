#pragma once
#include "engine/layer.h"
#include "kernels/pool2d.h"

namespace tl {

// torch.nn.AvgPool2d(kernel_size, stride=None, padding=0) with ceil_mode=False, count_include_pad=True.
class AvgPool2d : public Layer {
 public:
  AvgPool2d(int64_t kernel_size, int64_t stride = -1 /* = kernel_size */, int64_t padding = 0);
  const Pool2dParams& params() const { return params_; }

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  Pool2dParams params_;
  Shape input_shape_;  // all backward needs; empty when no training forward is pending
};

}  // namespace tl
