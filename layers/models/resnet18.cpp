#include "layers/models/resnet18.h"

#include <memory>
#include <string>

#include "engine/error.h"
#include "layers/adaptive_avgpool2d.h"
#include "layers/basic_block.h"
#include "layers/batchnorm2d.h"
#include "layers/conv2d.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/maxpool2d.h"
#include "layers/models/heads.h"
#include "layers/relu.h"

namespace tl {

namespace {

// torchvision's _make_layer: the first block carries the stride (and the downsample when the shape changes).
std::unique_ptr<Sequential> make_stage(int64_t in_channels, int64_t channels, int64_t stride) {
  auto stage = std::make_unique<Sequential>();
  stage->emplace<BasicBlock>("0", in_channels, channels, stride);
  stage->emplace<BasicBlock>("1", channels, channels, 1);
  return stage;
}

}  // namespace

void build_resnet18(Model& model, int64_t num_classes) {
  TL_CHECK(model.root().size() == 0, "build_resnet18: the model already has ", model.root().size(), " layers");
  TL_CHECK(num_classes > 0, "build_resnet18: num_classes must be positive, got ", num_classes);
  Sequential& root = model.root();
  root.emplace<Conv2d>("conv1", 3, 64, 7, 2, 3, false);
  root.emplace<BatchNorm2d>("bn1", 64);
  root.emplace<ReLU>("relu");
  root.emplace<MaxPool2d>("maxpool", 3, 2, 1);
  root.add("layer1", make_stage(64, 64, 1));
  root.add("layer2", make_stage(64, 128, 2));
  root.add("layer3", make_stage(128, 256, 2));
  root.add("layer4", make_stage(256, 512, 2));
  root.emplace<AdaptiveAvgPool2d>("avgpool", 1, 1);
  root.emplace<Flatten>("flatten");
  root.emplace<Linear>("fc", 512, num_classes);
  model.architecture = "resnet18";
  set_torchvision_preprocessing(model);
  model.assign_paths();
}

}  // namespace tl
