#include <doctest/doctest.h>

#include <algorithm>

#include "engine/context.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "support/gradcheck.h"
#include "support/small_model.h"
#include "support/test_util.h"

using namespace tl;

namespace {

struct Fixture {
  Context ctx;
  Model model;
  Rng rng{21};
  Fixture() {
    test::build_small_model(model);
    model.reset_parameters(rng);
  }
  Tensor input(DType dtype = DType::F32) { return test::random_tensor(rng, {3, 3, 9, 7}, dtype); }
  Tensor labels() { return Tensor::from_vector({3}, std::vector<double>{0, 2, 1}).to_dtype(DType::I64); }
  // One training step's loss and gradients.
  double train_forward_backward(const Tensor& x) {
    Tensor logits = model.forward(ctx, x, Mode::Train);
    LossResult loss = cross_entropy_loss(ctx, logits, labels());
    model.backward(ctx, loss.dlogits);
    return loss.loss;
  }
  int64_t backward_calls(const std::string& path) {
    Layer* layer = model.find_layer(path);
    REQUIRE_MESSAGE(layer != nullptr, path);
    return layer->backward_calls();
  }
};

}  // namespace

TEST_CASE("parameters and buffers carry torchvision-style names") {
  Fixture f;
  std::vector<std::string> names;
  for (auto& np : f.model.named_parameters()) names.push_back(np.name);
  std::vector<std::string> expected = {"conv1.weight", "bn1.weight", "bn1.bias",
                                       "block.conv1.weight", "block.bn1.weight", "block.bn1.bias",
                                       "block.conv2.weight", "block.bn2.weight", "block.bn2.bias",
                                       "block.downsample.0.weight", "block.downsample.1.weight",
                                       "block.downsample.1.bias", "fc.weight", "fc.bias"};
  CHECK(names == expected);
  std::vector<std::string> buffers;
  for (auto& nb : f.model.named_buffers()) buffers.push_back(nb.name);
  CHECK(std::find(buffers.begin(), buffers.end(), "block.downsample.1.running_var") != buffers.end());
  CHECK(std::find(buffers.begin(), buffers.end(), "bn1.num_batches_tracked") != buffers.end());
}

TEST_CASE("the whole small model passes a finite-difference gradient check in double") {
  Fixture f;
  f.model.to_dtype(DType::F64);
  Tensor x = f.input(DType::F64);
  test::GradCheckOptions options;
  options.max_checks_per_tensor = 24;
  auto report = test::check_layer_gradients(f.ctx, f.model.root(), x, options);
  INFO(report.worst);
  CHECK(report.checked > 100);
  CHECK(report.max_rel_error <= 1e-6);
}

TEST_CASE("gradients through Model::backward with a frozen stem match finite differences of the loss") {
  Fixture f;
  f.model.to_dtype(DType::F64);
  f.model.freeze_until("block");
  Tensor x = f.input(DType::F64);
  f.train_forward_backward(x);
  for (const char* name : {"block.conv2.weight", "block.bn1.bias", "fc.weight"}) {
    Parameter& p = f.model.parameter(name);
    Tensor analytic = p.grad().clone();
    Tensor original = p.value.clone();
    auto loss_at = [&](const Tensor& value) {
      p.value.copy_from(f.ctx, value);
      Tensor logits = f.model.forward(f.ctx, x, Mode::Train);
      double loss = cross_entropy_loss(f.ctx, logits, f.labels()).loss;
      p.value.copy_from(f.ctx, original);
      return loss;
    };
    auto report = test::check_function_gradient(loss_at, original, analytic, name);
    INFO(report.worst);
    CHECK(report.max_rel_error <= 1e-6);
  }
}

TEST_CASE("freeze_until: frozen layers get no gradient, no backward call, and do not move") {
  Fixture f;
  f.model.freeze_until("block");
  Tensor conv1_before = f.model.parameter("conv1.weight").value.clone();
  Tensor bn1_mean_before;
  for (auto& nb : f.model.named_buffers())
    if (nb.name == "bn1.running_mean") bn1_mean_before = nb.buffer->value.clone();
  Tensor block_before = f.model.parameter("block.conv1.weight").value.clone();

  auto sgd = make_sgd({.momentum = 0.9});
  sgd->add_group(f.model.named_parameters(), 0.1);
  f.train_forward_backward(f.input());
  sgd->step(f.ctx);

  for (const char* frozen : {"conv1.weight", "bn1.weight", "bn1.bias"}) {
    CHECK_FALSE(f.model.parameter(frozen).has_grad());
    CHECK_FALSE(f.model.parameter(frozen).trainable());
  }
  CHECK(f.model.parameter("block.conv1.weight").has_grad());
  CHECK(test::bit_identical(f.model.parameter("conv1.weight").value, conv1_before));
  CHECK_FALSE(test::bit_identical(f.model.parameter("block.conv1.weight").value, block_before));
  // Frozen BatchNorm keeps its running statistics even in a training step.
  for (auto& nb : f.model.named_buffers())
    if (nb.name == "bn1.running_mean") CHECK(test::bit_identical(nb.buffer->value, bn1_mean_before));
  // Backward stopped at the lowest trainable layer: nothing below the block was called.
  for (const char* below : {"conv1", "bn1", "relu", "maxpool"}) CHECK(f.backward_calls(below) == 0);
  CHECK(f.backward_calls("block.conv1") == 1);
  CHECK(f.backward_calls("fc") == 1);
  CHECK(sgd->state_count() == f.model.named_parameters().size() - 3);
}

TEST_CASE("head-only training calls backward on the head alone") {
  Fixture f;
  f.model.set_trainable("*", false);
  CHECK(f.model.set_trainable("fc.*", true) == 2);
  f.train_forward_backward(f.input());
  CHECK(f.backward_calls("fc") == 1);
  for (const char* below : {"flatten", "avgpool", "block", "block.bn2", "conv1"}) CHECK(f.backward_calls(below) == 0);
  CHECK(f.model.count_parameters(true) == 6 * 3 + 3);
}

TEST_CASE("a trainable layer in the middle gets its weight gradient but no input gradient is computed below it") {
  Fixture f;
  f.model.set_trainable("*", false);
  f.model.set_trainable("block.conv2.*", true);
  f.train_forward_backward(f.input());
  CHECK(f.model.parameter("block.conv2.weight").has_grad());
  CHECK(f.backward_calls("block.conv2") == 1);
  CHECK(f.backward_calls("block.relu") == 0);
  CHECK(f.backward_calls("block.downsample") == 0);
  CHECK(f.backward_calls("block.conv1") == 0);
}

TEST_CASE("freezing errors name the pattern") {
  Fixture f;
  CHECK_THROWS_WITH(f.model.set_trainable("layer9.*", false), "set_trainable: pattern 'layer9.*' matches no parameter");
  CHECK_THROWS_WITH(f.model.freeze_until("layer4"), "freeze_until: no parameter under layer 'layer4'");
}

TEST_CASE("a shape mismatch between layers names the layer and both shapes") {
  Fixture f;
  Tensor wrong_channels = test::random_tensor(f.rng, {2, 5, 9, 7}, DType::F32);
  try {
    f.model.forward(f.ctx, wrong_channels, Mode::Eval);
    FAIL("expected an error");
  } catch (const Error& e) {
    std::string message = e.what();
    INFO(message);
    CHECK(message.find("layer conv1 (Conv2d)") != std::string::npos);
    CHECK(message.find("[2,5,9,7]") != std::string::npos);
    CHECK(message.find("[4,3,3,3]") != std::string::npos);
  }
}

TEST_CASE("an inference forward keeps no activations for backward") {
  Fixture f;
  Tensor logits = f.model.forward(f.ctx, f.input(), Mode::Eval);
  CHECK_THROWS_WITH(f.model.backward(f.ctx, logits), doctest::Contains("no saved activations"));
  // An Eval forward after a training forward drops what the training forward kept, in every layer.
  f.model.forward(f.ctx, f.input(), Mode::Train);
  logits = f.model.forward(f.ctx, f.input(), Mode::Eval);
  CHECK_THROWS_WITH(f.model.backward(f.ctx, logits), doctest::Contains("no saved activations"));
  Layer* inner_relu = f.model.find_layer("block.relu");
  REQUIRE(inner_relu != nullptr);
  CHECK_THROWS_WITH(inner_relu->backward(f.ctx, Tensor::zeros({1}), true), doctest::Contains("no saved activations"));
}
