#pragma once
// The small model the engine tests share: conv-BN-ReLU-pool, one residual block with a downsample, global
// average pool, linear. Parameter names follow torchvision's conventions ("block.downsample.0.weight").
#include "engine/model.h"

namespace tl::test {

// in_channels -> 4 -> BasicBlock(4, 6, stride 2) -> classes
void build_small_model(Model& model, int64_t in_channels = 3, int64_t classes = 3);

}  // namespace tl::test
