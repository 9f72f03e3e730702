// Whole-network training against PyTorch: the mechanics of `tl transfer full`. ResNet18 with the golden formula
// weights (tests/support/golden_weights.h), every parameter trainable, every BatchNorm on batch statistics and
// updating its running statistics, two SGD steps (lr 0.01, momentum 0.9) on two real images — against
// torchvision doing the same (tests/golden/make_golden.py, "Full training").
//
// Everything runs in float64 on both sides (make_golden.py says why: ReLU sign flips make float32 gradients of any
// two correct implementations differ by ~5e-3). Checked: both losses, every gradient of step 1, the change of
// every parameter over the two steps and of every running statistic. A change is compared rather than the value
// itself because the value is dominated by the untouched initial weight and would hide a wrong update.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "layers/models/resnet18.h"
#include "support/golden_file.h"
#include "support/golden_weights.h"
#include "support/test_util.h"

using namespace tl;

namespace {

// Loss and gradients: summation order costs ~1e-16 per operation in float64; through the network's conditioning
// at most ~1e3 times that (the layer4+fc step measured 4e-15).
constexpr double kStepTolerance = 1e-10;
// A change over two steps is a difference of two values ~1e3 times larger than it (weights ~0.1, changes ~1e-4):
// the subtraction costs up to ~1e-13 relative, still far below any real mismatch (a wrong momentum, running-
// statistics rule or BatchNorm mode moves a change by more than 1e-3).
constexpr double kChangeTolerance = 1e-9;

// Every `stride`-th element of a flattened tensor, as make_golden.py samples it.
std::vector<double> every_nth(const Tensor& t, int64_t stride) {
  std::vector<double> all = t.to_vector(), out;
  for (size_t i = 0; i < all.size(); i += static_cast<size_t>(stride)) out.push_back(all[i]);
  return out;
}

double relative_l2(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) diff += (a[i] - b[i]) * (a[i] - b[i]), norm += b[i] * b[i];
  REQUIRE(norm > 0);  // a zero reference would make the comparison vacuous
  return std::sqrt(diff / norm);
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = a[i] - b[i];
  return out;
}

struct Worst {
  double error = 0;
  std::string name;
  void add(double e, const std::string& n) {
    if (e >= error) error = e, name = n;
  }
};

}  // namespace

TEST_CASE("ResNet18 trained whole (BatchNorm in train mode, SGD momentum, two steps) matches torchvision") {
  Context ctx;
  test::GoldenFile golden("resnet18_full_training_golden.safetensors");
  Tensor images = test::golden_images().to_dtype(DType::F64);
  Tensor labels = test::golden_labels(golden);
  Model model;
  build_resnet18(model, std::stoll(golden.meta("num_classes")));
  test::fill_golden_weights(model);
  model.to_dtype(DType::F64);
  model.set_trainable("*", true);

  std::map<std::string, Tensor> initial;  // every parameter and buffer before training
  for (const test::StateEntry& e : test::state_dict_entries(model)) initial[e.name] = e.value->clone();

  SgdOptions options;
  options.momentum = std::stod(golden.meta("momentum"));
  auto sgd = make_sgd(options);
  sgd->add_group(model.named_parameters(), std::stod(golden.meta("lr")));

  Worst gradient_samples, gradient_norms;
  for (int step = 1; step <= 2; ++step) {
    sgd->zero_grad(ctx);
    Tensor logits = model.forward(ctx, images, Mode::Train);
    LossResult loss = cross_entropy_loss(ctx, logits, labels);
    double expected = golden.get("loss." + std::to_string(step)).item(0);
    MESSAGE("step ", step, ": loss ", loss.loss, " vs PyTorch ", expected);
    CHECK(std::fabs(loss.loss - expected) <= kStepTolerance * expected);
    model.backward(ctx, loss.dlogits);
    if (step == 1) {
      for (NamedParameter& np : model.named_parameters()) {
        INFO("gradient of ", np.name);
        REQUIRE(np.parameter->has_grad());
        const Tensor& grad = np.parameter->grad();
        double sample_error = relative_l2(every_nth(grad, std::stoll(golden.meta("grad_stride." + np.name))),
                                          golden.get("grad." + np.name).to_vector());
        std::vector<double> g = grad.to_vector();
        double norm = 0;
        for (double v : g) norm += v * v;
        double expected_norm = golden.get("grad_norm." + np.name).item(0);
        double norm_error = std::fabs(std::sqrt(norm) - expected_norm) / expected_norm;
        CHECK(sample_error <= kStepTolerance);
        CHECK(norm_error <= kStepTolerance);
        gradient_samples.add(sample_error, np.name);
        gradient_norms.add(norm_error, np.name);
      }
    }
    sgd->step(ctx);
  }
  MESSAGE("step 1 gradients: worst sample error ", gradient_samples.error, " (", gradient_samples.name,
          "), worst norm error ", gradient_norms.error, " (", gradient_norms.name, ")");

  Worst parameter_changes;
  int parameters = 0;
  for (NamedParameter& np : model.named_parameters()) {
    INFO("parameter ", np.name);
    int64_t stride = std::stoll(golden.meta("param_stride." + np.name));
    std::vector<double> before = every_nth(initial.at(np.name), stride);
    double error = relative_l2(minus(every_nth(np.parameter->value, stride), before),
                               minus(golden.get("param." + np.name).to_vector(), before));
    CHECK(error <= kChangeTolerance);
    parameter_changes.add(error, np.name);
    ++parameters;
  }
  MESSAGE(parameters, " parameters after two steps: worst relative error of the change ", parameter_changes.error,
          " (", parameter_changes.name, ")");
  CHECK(parameters == 62);

  Worst statistic_changes;
  int statistics = 0;
  for (const test::StateEntry& e : test::state_dict_entries(model)) {
    bool is_statistic = e.name.find("running_mean") != std::string::npos ||
                        e.name.find("running_var") != std::string::npos;
    if (e.name.find("num_batches_tracked") != std::string::npos) {
      INFO(e.name);
      CHECK(e.value->item(0) == 2);
    }
    if (!is_statistic) continue;
    INFO("buffer ", e.name);
    std::vector<double> before = initial.at(e.name).to_vector();
    double error = relative_l2(minus(e.value->to_vector(), before), minus(golden.get(e.name).to_vector(), before));
    CHECK(error <= kChangeTolerance);
    statistic_changes.add(error, e.name);
    ++statistics;
  }
  MESSAGE(statistics, " running statistics after two steps: worst relative error of the change ",
          statistic_changes.error, " (", statistic_changes.name, ")");
  CHECK(statistics == 40);
}
