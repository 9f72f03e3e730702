#pragma once
// FLOPs per image of a model, counted from its layers' shapes (not taken from a paper), for the benchmark's
// roofline column.
//
// What is counted: the multiply-adds of convolutions and fully connected layers, 2 FLOPs each:
//   Conv2d  2 * C * KH * KW * OH * OW * O      (groups 1, dilation 1: the only convolutions tl has)
//   Linear  2 * in * out
// What is not: bias adds, BatchNorm, ReLU, pooling, dropout, the residual add, the loss and the optimizer update.
// They are memory-bound and together well under 1% of the matrix FLOPs of ResNet18 and VGG16.
//
// A training step costs, per conv/linear layer with forward cost F:
//   F            forward, always;
//   + F          backward-filter (weight gradient), only when the layer's weight is trainable;
//   + F          backward-data (input gradient), only when the layer's input needs a gradient, i.e. some parameter
//                below it (closer to the input, anywhere on its path) is trainable; the lowest layers of a
//                fine-tuned model, and the first layer always, compute no input gradient.
// So full training is 3F summed minus F of the first layer (conv1 needs no gradient for the image), and a
// head-only step is the forward plus 1F of the head. This is the engine's own backward plan (engine/layer.h,
// plan_backward), so the count follows what tl actually computes; PyTorch prunes the same way with
// requires_grad=False.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.h"

namespace tl {

// One convolution or fully connected layer, per image.
struct MatmulLayerFlops {
  std::string path;      // "layer4.0.conv1", "classifier.6"
  std::string kind;      // "Conv2d" or "Linear"
  int64_t forward = 0;   // FLOPs of one forward, 2 per multiply-add
  bool weight_trains = false;     // backward-filter runs
  bool input_needs_grad = false;  // backward-data runs
  int64_t training() const { return forward * (1 + int64_t(weight_trains) + int64_t(input_needs_grad)); }
};

struct ModelFlops {
  std::vector<MatmulLayerFlops> layers;  // in forward order (a block's downsample after its main branch)
  int64_t forward() const;
  int64_t training() const;
  // Forward FLOPs of the layers whose path is `prefix` or starts with `prefix.` ("layer4" -> layer4.*).
  int64_t forward_under(const std::string& prefix) const;
  int64_t training_under(const std::string& prefix) const;
};

// Walks the model with one image of `image_shape` {C, H, W}. The trainable flags are the parameters' current ones;
// this plans backward on the model's root (as a Train forward would), so call it between steps, not inside one.
// Throws naming the layer when a shape does not fit or a layer kind is unknown here.
ModelFlops count_model_flops(Model& model, const Shape& image_shape);

}  // namespace tl
