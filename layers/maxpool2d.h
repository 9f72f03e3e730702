#pragma once
#include "engine/layer.h"
#include "kernels/pool2d.h"

namespace tl {

// torch.nn.MaxPool2d(kernel_size, stride=None, padding=0) with dilation 1 and ceil_mode=False.
class MaxPool2d : public Layer {
 public:
  MaxPool2d(int64_t kernel_size, int64_t stride = -1 /* = kernel_size */, int64_t padding = 0);
  const Pool2dParams& params() const { return params_; }

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  Pool2dParams params_;
  Tensor indices_;     // argmax per output, kept for backward
  Shape input_shape_;  // dx's shape
};

}  // namespace tl
