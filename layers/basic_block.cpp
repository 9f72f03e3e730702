#include "layers/basic_block.h"

#include "kernels/elementwise.h"
#include "layers/batchnorm2d.h"
#include "layers/conv2d.h"

namespace tl {

BasicBlock::BasicBlock(int64_t in_channels, int64_t channels, int64_t stride) : Layer("BasicBlock") {
  main_.emplace<Conv2d>("conv1", in_channels, channels, 3, stride, 1, false);
  main_.emplace<BatchNorm2d>("bn1", channels);
  main_.emplace<ReLU>("relu");
  main_.emplace<Conv2d>("conv2", channels, channels, 3, 1, 1, false);
  main_.emplace<BatchNorm2d>("bn2", channels);
  if (stride != 1 || in_channels != channels) {
    downsample_ = std::make_unique<Sequential>();
    downsample_->emplace<Conv2d>("0", in_channels, channels, 1, stride, 0, false);
    downsample_->emplace<BatchNorm2d>("1", channels);
  }
}

std::vector<std::pair<std::string, Layer*>> BasicBlock::children() {
  auto out = main_.children();
  if (downsample_) out.emplace_back("downsample", downsample_.get());
  return out;
}

bool BasicBlock::plan_backward(bool input_requires_grad) {
  bool main_out = main_.plan_backward(input_requires_grad);
  bool shortcut_out = downsample_ ? downsample_->plan_backward(input_requires_grad) : input_requires_grad;
  bool out = relu_out_.plan_backward(main_out || shortcut_out);
  set_plan(input_requires_grad, out);
  return out;
}

Tensor BasicBlock::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  relu_out_.set_path(path() + ".relu_out");  // not a child (it has no parameters), so Model never names it
  Tensor main = main_.forward(ctx, x, mode);
  Tensor shortcut = downsample_ ? downsample_->forward(ctx, x, mode) : x;
  TL_CHECK(main.shape() == shortcut.shape(), "residual shapes differ: main ", shape_str(main.shape()), " vs shortcut ",
           shape_str(shortcut.shape()));
  Tensor sum = Tensor::empty_like(ctx, main);
  add_forward(ctx, main, shortcut, sum);
  return relu_out_.forward(ctx, sum, mode);
}

Tensor BasicBlock::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  Tensor dsum = relu_out_.backward(ctx, dy, true);
  // The sum passes its gradient unchanged to both branches.
  Tensor dx;
  if (main_.output_requires_grad()) dx = main_.backward(ctx, dsum, need_dx);
  Tensor dshortcut;
  if (downsample_) {
    if (downsample_->output_requires_grad()) dshortcut = downsample_->backward(ctx, dsum, need_dx);
  } else if (need_dx) {
    dshortcut = dsum;
  }
  if (!need_dx) return Tensor();
  if (!dx.defined()) return dshortcut.defined() ? dshortcut.clone(ctx) : Tensor();
  if (dshortcut.defined()) add_into(ctx, dx, dshortcut);
  return dx;
}

}  // namespace tl
