#include "layers/models/vgg16.h"

#include <memory>
#include <string>

#include "engine/error.h"
#include "layers/adaptive_avgpool2d.h"
#include "layers/conv2d.h"
#include "layers/dropout.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/maxpool2d.h"
#include "layers/models/heads.h"
#include "layers/relu.h"

namespace tl {

namespace {

constexpr int64_t kPool = 0;
// torchvision's cfgs["D"]: output channels of each convolution, kPool for a 2x2 max pool.
constexpr int64_t kConfigD[] = {64,  64,  kPool, 128, 128, kPool, 256, 256, 256, kPool,
                                512, 512, 512,   kPool, 512, 512, 512, kPool};

std::unique_ptr<Sequential> make_features() {
  auto features = std::make_unique<Sequential>();
  int index = 0;
  int64_t in_channels = 3;
  for (int64_t channels : kConfigD) {
    if (channels == kPool) {
      features->emplace<MaxPool2d>(std::to_string(index++), 2, 2);
      continue;
    }
    features->emplace<Conv2d>(std::to_string(index++), in_channels, channels, 3, 1, 1, true);
    features->emplace<ReLU>(std::to_string(index++));
    in_channels = channels;
  }
  return features;
}

std::unique_ptr<Sequential> make_classifier(int64_t num_classes) {
  auto classifier = std::make_unique<Sequential>();
  classifier->emplace<Linear>("0", 512 * 7 * 7, 4096);
  classifier->emplace<ReLU>("1");
  classifier->emplace<Dropout>("2", 0.5);
  classifier->emplace<Linear>("3", 4096, 4096);
  classifier->emplace<ReLU>("4");
  classifier->emplace<Dropout>("5", 0.5);
  classifier->emplace<Linear>("6", 4096, num_classes);
  return classifier;
}

}  // namespace

void build_vgg16(Model& model, int64_t num_classes, bool include_top) {
  TL_CHECK(model.root().size() == 0, "build_vgg16: the model already has ", model.root().size(), " layers");
  TL_CHECK(num_classes > 0, "build_vgg16: num_classes must be positive, got ", num_classes);
  Sequential& root = model.root();
  root.add("features", make_features());
  if (include_top) {
    root.emplace<AdaptiveAvgPool2d>("avgpool", 7, 7);
    root.emplace<Flatten>("flatten");
    root.add("classifier", make_classifier(num_classes));
  }
  model.architecture = "vgg16";
  model.metadata["include_top"] = include_top ? "true" : "false";
  set_torchvision_preprocessing(model);
  model.assign_paths();
}

}  // namespace tl
