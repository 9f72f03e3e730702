#pragma once
// ResNet's BasicBlock with torchvision's names: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), where the
// shortcut is the identity or downsample = (1x1 conv with stride, BatchNorm) when the shape changes.
#include <memory>

#include "engine/layer.h"
#include "engine/sequential.h"
#include "layers/relu.h"

namespace tl {

class BasicBlock : public Layer {
 public:
  BasicBlock(int64_t in_channels, int64_t channels, int64_t stride = 1);

  // conv1, bn1, relu, conv2, bn2 and, when present, downsample ("downsample.0", "downsample.1").
  std::vector<std::pair<std::string, Layer*>> children() override;
  bool plan_backward(bool input_requires_grad) override;
  bool has_downsample() const { return downsample_ != nullptr; }

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  Sequential main_;                          // conv1 .. bn2; its children appear directly under the block
  std::unique_ptr<Sequential> downsample_;   // null: identity shortcut
  ReLU relu_out_;                            // after the sum
};

}  // namespace tl
