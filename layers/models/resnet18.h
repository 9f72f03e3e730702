#pragma once
// torchvision.models.resnet18 (0.14) with its structure and parameter names, so a torchvision state_dict loads by
// name: conv1 (7x7, stride 2, padding 3, no bias), bn1, relu, maxpool (3, stride 2, padding 1), layer1..layer4 (two
// BasicBlocks each; strides 1, 2, 2, 2; the first block of layer2..4 has downsample.0/.1), avgpool
// (AdaptiveAvgPool 1x1), flatten (torch.flatten in torchvision's forward; no parameters) and fc.
// Any input of at least 32x32 works: the global average pool removes the spatial size.
#include <cstdint>

#include "engine/model.h"

namespace tl {

// Builds into the empty model.root(); sets model.architecture = "resnet18" and torchvision's preprocessing keys in
// model.metadata. Parameters get PyTorch's per-layer default initialisation (a fixed seed); load weights or call
// model.reset_parameters(rng) after. 11,689,512 parameters with num_classes = 1000.
void build_resnet18(Model& model, int64_t num_classes = 1000);

}  // namespace tl
