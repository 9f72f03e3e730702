#include "support/small_model.h"

#include "layers/adaptive_avgpool2d.h"
#include "layers/basic_block.h"
#include "layers/batchnorm2d.h"
#include "layers/conv2d.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/maxpool2d.h"
#include "layers/relu.h"

namespace tl::test {

void build_small_model(Model& model, int64_t in_channels, int64_t classes) {
  Sequential& root = model.root();
  root.emplace<Conv2d>("conv1", in_channels, 4, 3, 1, 1, false);
  root.emplace<BatchNorm2d>("bn1", 4);
  root.emplace<ReLU>("relu");
  root.emplace<MaxPool2d>("maxpool", 2, 2);
  root.emplace<BasicBlock>("block", 4, 6, 2);
  root.emplace<AdaptiveAvgPool2d>("avgpool", 1, 1);
  root.emplace<Flatten>("flatten");
  root.emplace<Linear>("fc", 6, classes);
  model.architecture = "small-test";
  model.assign_paths();
}

}  // namespace tl::test
