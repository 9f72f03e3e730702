#include <doctest/doctest.h>

#include <memory>

#include "engine/model.h"
#include "layers/models/flops.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"
#include "support/small_model.h"

namespace {

// Multiply-adds of a convolution with C input and O output channels, a KxK kernel and an OHxOW output.
constexpr int64_t conv_macs(int64_t c, int64_t k, int64_t oh, int64_t ow, int64_t o) { return c * k * k * oh * ow * o; }

// The test's small model at 3x8x8 (tests/support/small_model.cpp), by hand:
//   conv1    3->4, 3x3, pad 1        8x8 out   3*9*64*4  = 6912 MAC
//   maxpool  2                       4x4
//   block    conv1 4->6, 3x3, s2     2x2 out   4*9*4*6   =  864 MAC
//            conv2 6->6, 3x3         2x2 out   6*9*4*6   = 1296 MAC
//            downsample 4->6, 1x1 s2 2x2 out   4*1*4*6   =   96 MAC
//   fc       6->3                              18 MAC
constexpr int64_t kConv1 = 2 * 6912, kBlockConv1 = 2 * 864, kBlockConv2 = 2 * 1296, kDownsample = 2 * 96, kFc = 2 * 18;

class Mystery : public tl::Layer {
 public:
  Mystery() : Layer("Mystery") {}

 protected:
  tl::Tensor forward_impl(tl::Context&, const tl::Tensor& x, tl::Mode) override { return x; }
  tl::Tensor backward_impl(tl::Context&, const tl::Tensor& dy, bool) override { return dy; }
};

}  // namespace

TEST_CASE("FLOP count of a tiny model matches hand arithmetic, layer by layer") {
  tl::Model model;
  tl::test::build_small_model(model);
  tl::ModelFlops flops = tl::count_model_flops(model, {3, 8, 8});
  REQUIRE(flops.layers.size() == 5);
  CHECK(flops.layers[0].path == "conv1");
  CHECK(flops.layers[0].forward == kConv1);
  CHECK(flops.layers[1].path == "block.conv1");
  CHECK(flops.layers[1].forward == kBlockConv1);
  CHECK(flops.layers[2].path == "block.conv2");
  CHECK(flops.layers[2].forward == kBlockConv2);
  CHECK(flops.layers[3].path == "block.downsample.0");
  CHECK(flops.layers[3].forward == kDownsample);
  CHECK(flops.layers[4].path == "fc");
  CHECK(flops.layers[4].kind == "Linear");
  CHECK(flops.layers[4].forward == kFc);
  CHECK(flops.forward() == kConv1 + kBlockConv1 + kBlockConv2 + kDownsample + kFc);
  CHECK(flops.forward_under("block") == kBlockConv1 + kBlockConv2 + kDownsample);
  CHECK(flops.forward_under("bloc") == 0);  // a prefix counts only at a dot
}

TEST_CASE("training FLOPs follow the backward plan: filter gradients for trainable weights, data gradients above them") {
  tl::Model model;
  tl::test::build_small_model(model);
  const tl::Shape image = {3, 8, 8};

  SUBCASE("everything trains: 3x forward, less the first layer's input gradient") {
    tl::ModelFlops f = tl::count_model_flops(model, image);
    CHECK_FALSE(f.layers[0].input_needs_grad);
    CHECK(f.layers[0].weight_trains);
    CHECK(f.training() == 2 * kConv1 + 3 * (kBlockConv1 + kBlockConv2 + kDownsample + kFc));
    CHECK(f.training() == 3 * f.forward() - kConv1);
  }
  SUBCASE("head only: the forward plus the head's weight gradient") {
    model.set_trainable("*", false);
    model.set_trainable("fc.*", true);
    tl::ModelFlops f = tl::count_model_flops(model, image);
    CHECK(f.training() == f.forward() + kFc);
    CHECK_FALSE(f.layers[4].input_needs_grad);
  }
  SUBCASE("a trainable BatchNorm below frozen convolutions still makes them pass input gradients") {
    model.set_trainable("conv1.*", false);
    tl::ModelFlops f = tl::count_model_flops(model, image);
    CHECK(f.training() == kConv1 + 3 * (kBlockConv1 + kBlockConv2 + kDownsample + kFc));
  }
  SUBCASE("fine-tuning from the block: no input gradient for the block's first convolutions") {
    model.freeze_until("block");
    tl::ModelFlops f = tl::count_model_flops(model, image);
    CHECK(f.training() == kConv1 + 2 * kBlockConv1 + 3 * kBlockConv2 + 2 * kDownsample + 3 * kFc);
    CHECK(f.training_under("block") == 2 * kBlockConv1 + 3 * kBlockConv2 + 2 * kDownsample);
  }
}

TEST_CASE("ResNet18 at 224x224: 1.814 GMAC of convolutions and fc (3.63 GFLOP)") {
  tl::Model model;
  tl::build_resnet18(model);
  tl::ModelFlops f = tl::count_model_flops(model, {3, 224, 224});
  // Stage by stage: each stage after layer1 halves the size and doubles the width, so each costs the same.
  const int64_t conv1 = conv_macs(3, 7, 112, 112, 64);
  const int64_t layer1 = 4 * conv_macs(64, 3, 56, 56, 64);
  const int64_t layer2 = conv_macs(64, 3, 28, 28, 128) + 3 * conv_macs(128, 3, 28, 28, 128) + conv_macs(64, 1, 28, 28, 128);
  const int64_t layer3 = conv_macs(128, 3, 14, 14, 256) + 3 * conv_macs(256, 3, 14, 14, 256) + conv_macs(128, 1, 14, 14, 256);
  const int64_t layer4 = conv_macs(256, 3, 7, 7, 512) + 3 * conv_macs(512, 3, 7, 7, 512) + conv_macs(256, 1, 7, 7, 512);
  const int64_t fc = 512 * 1000;
  CHECK(layer2 == layer3);
  CHECK(layer3 == layer4);
  const int64_t macs = conv1 + layer1 + layer2 + layer3 + layer4 + fc;
  CHECK(macs == 1'814'073'344);
  CHECK(f.layers.size() == 21);  // 20 convolutions (17 + 3 downsamples) and fc
  CHECK(f.forward() == 2 * macs);
  CHECK(f.forward_under("conv1") == 2 * conv1);
  CHECK(f.forward_under("layer1") == 2 * layer1);
  CHECK(f.forward_under("layer4") == 2 * layer4);
  CHECK(f.forward_under("fc") == 2 * fc);
  CHECK(f.training() == 3 * f.forward() - 2 * conv1);

  // finetune layer4+fc: the frozen trunk runs forward only; layer4's first convolutions get no input gradient.
  model.set_trainable("*", false);
  model.set_trainable("layer4.*", true);
  model.set_trainable("fc.*", true);
  tl::ModelFlops ft = tl::count_model_flops(model, {3, 224, 224});
  const int64_t layer4_entry = conv_macs(256, 3, 7, 7, 512) + conv_macs(256, 1, 7, 7, 512);  // conv1 + downsample
  CHECK(ft.training() == 2 * (conv1 + layer1 + layer2 + layer3) + 2 * 3 * (layer4 + fc) - 2 * layer4_entry);
}

TEST_CASE("VGG16 at 224x224: 15.47 GMAC") {
  tl::Model model;
  tl::build_vgg16(model);
  tl::ModelFlops f = tl::count_model_flops(model, {3, 224, 224});
  const int64_t block1 = conv_macs(3, 3, 224, 224, 64) + conv_macs(64, 3, 224, 224, 64);
  const int64_t block2 = conv_macs(64, 3, 112, 112, 128) + conv_macs(128, 3, 112, 112, 128);
  const int64_t block3 = conv_macs(128, 3, 56, 56, 256) + 2 * conv_macs(256, 3, 56, 56, 256);
  const int64_t block4 = conv_macs(256, 3, 28, 28, 512) + 2 * conv_macs(512, 3, 28, 28, 512);
  const int64_t block5 = 3 * conv_macs(512, 3, 14, 14, 512);
  const int64_t classifier = 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000;
  const int64_t macs = block1 + block2 + block3 + block4 + block5 + classifier;
  CHECK(macs == 15'470'264'320);
  CHECK(f.layers.size() == 16);
  CHECK(f.forward() == 2 * macs);
  CHECK(f.forward_under("classifier") == 2 * classifier);
  // features.24 onward (the last three convolutions, block 5) + classifier: features.24 gets no input gradient.
  model.freeze_until("features.24");
  tl::ModelFlops ft = tl::count_model_flops(model, {3, 224, 224});
  const int64_t conv5 = conv_macs(512, 3, 14, 14, 512);
  CHECK(ft.training() == 2 * (block1 + block2 + block3 + block4) + 2 * (2 * conv5 + 3 * 2 * conv5) + 2 * 3 * classifier);
}

TEST_CASE("FLOP count names the layer it cannot handle") {
  tl::Model model;
  model.root().emplace<Mystery>("odd");
  CHECK_THROWS_WITH(tl::count_model_flops(model, {3, 8, 8}), doctest::Contains("layer odd (Mystery)"));
  tl::Model small;
  tl::test::build_small_model(small);
  CHECK_THROWS_WITH(tl::count_model_flops(small, {5, 8, 8}), doctest::Contains("layer conv1 (Conv2d)"));
  CHECK_THROWS_WITH(tl::count_model_flops(small, {8, 8}), doctest::Contains("is not {C, H, W}"));
}
