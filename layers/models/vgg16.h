#pragma once
// torchvision.models.vgg16 (0.14, configuration "D", no BatchNorm) with its structure and parameter names:
//   features    13 convolutions (3x3, padding 1, with bias) each followed by ReLU, and MaxPool(2, 2) at indices
//               4, 9, 16, 23, 30; convolutions at features.{0,2,5,7,10,12,14,17,19,21,24,26,28}
//   avgpool     AdaptiveAvgPool(7, 7)
//   flatten     (torch.flatten in torchvision's forward; no parameters)
//   classifier  0 Linear(25088, 4096), 1 ReLU, 2 Dropout(0.5), 3 Linear(4096, 4096), 4 ReLU, 5 Dropout(0.5),
//               6 Linear(4096, num_classes)
// Any input of at least 32x32 works: the adaptive pool brings every feature map to 7x7 (replicating a smaller one).
#include <cstdint>

#include "engine/model.h"

namespace tl {

// Builds into the empty model.root(); sets model.architecture = "vgg16" and torchvision's preprocessing keys.
// include_top = false builds `features` only (as Keras' include_top=False): the output is [N, 512, H/32, W/32]
// (floor at each pool) and model.metadata["include_top"] = "false". 138,357,544 parameters with the 1000-way top,
// 14,714,688 without. Parameters get PyTorch's per-layer default initialisation (a fixed seed).
void build_vgg16(Model& model, int64_t num_classes = 1000, bool include_top = true);

}  // namespace tl
