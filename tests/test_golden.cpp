// Parity with PyTorch: ResNet18 and VGG16 on two real images (one ant, one bee), against values torchvision computed
// and committed with the script that made them (tests/golden/make_golden.py, which documents every tensor in the
// files). Both sides fill every parameter and buffer with the same deterministic formula
// (tests/support/golden_weights.h), so the files stay small; the trained backbone in ../shared/data is checked too.
//
// Tolerances (DESIGN.md, "Models vs PyTorch"): logits and features in float32 within relative L2 error 1e-4, top-5
// classes in the same order. Both sides compute in float32 with different summation orders (our im2col + GEMM
// against oneDNN), which costs about 1e-6 per layer; a wrong padding, stride, bias, layer order or BatchNorm mode
// costs far more than 1e-4. One training step's loss and gradients are compared in float64 (make_golden.py says
// why: ReLU sign flips make float32 gradients of any two correct implementations differ by ~5e-3), tighter still.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "layers/dropout.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"
#include "support/golden_file.h"
#include "support/golden_weights.h"
#include "support/test_util.h"
#include "weights/json.h"

#if __has_include("weights/pth.h")
#include "weights/pth.h"
#define TL_GOLDEN_HAVE_PTH 1
#else
#define TL_GOLDEN_HAVE_PTH 0
#endif

using namespace tl;
using test::GoldenFile;
using test::golden_images;
using test::golden_labels;

namespace {

constexpr double kTolerance = 1e-4;  // float32 outputs: see the top of the file
// The training step runs in float64 on both sides, where summation order costs ~1e-16 and the step's conditioning
// (float32 errors of 3e-6 grow to 5e-3 in layer4's gradients) at most ~1e3 times that; measured: 4e-15.
constexpr double kGradientTolerance = 1e-10;

// An eval forward through `seq` that also hands back the output of the layer at the dotted path `tap` below it
// ("flatten", "classifier.4").
Tensor forward_with_tap(Context& ctx, Sequential& seq, const Tensor& x, const std::string& tap, Tensor& tapped) {
  size_t dot = tap.find('.');
  std::string first = tap.substr(0, dot);
  std::string rest = dot == std::string::npos ? "" : tap.substr(dot + 1);
  Tensor h = x;
  for (size_t i = 0; i < seq.size(); ++i) {
    if (seq.name_at(i) == first && !rest.empty()) {
      auto* inner = dynamic_cast<Sequential*>(&seq.at(i));
      REQUIRE_MESSAGE(inner != nullptr, "tap ", tap, " goes through a layer that is not a Sequential");
      h = forward_with_tap(ctx, *inner, h, rest, tapped);
    } else {
      h = seq.at(i).forward(ctx, h, Mode::Eval);
      if (seq.name_at(i) == first && rest.empty()) tapped = h;
    }
  }
  return h;
}

// The weights both sides use must be equal before any output can be: names in state_dict order and per-tensor
// checksums. The checksums are sums of the same float32 values in another order, hence 1e-9 rather than 0.
void check_weights_match_golden(Model& model, const GoldenFile& golden) {
  auto entries = test::state_dict_entries(model);
  const json::Array names = json::parse(golden.meta("state_dict")).as_array();
  REQUIRE(entries.size() == names.size());
  Tensor sums = golden.get("weight_checksum");
  REQUIRE(sums.shape() == Shape{static_cast<int64_t>(names.size()), 2});
  int mismatches = 0;
  for (size_t k = 0; k < entries.size(); ++k) {
    auto ours = test::golden_checksum(*entries[k].value);
    double abs_sum = sums.item(2 * k), weighted = sums.item(2 * k + 1);
    double tol = 1e-9 * std::max(1.0, abs_sum);
    bool ok = entries[k].name == names[k].as_string() && std::fabs(ours[0] - abs_sum) <= tol &&
              std::fabs(ours[1] - weighted) <= tol;
    if (!ok && ++mismatches <= 5)
      FAIL_CHECK("state_dict entry ", k, ": ours ", entries[k].name, " {", ours[0], ", ", ours[1], "}, PyTorch ",
                 names[k].as_string(), " {", abs_sum, ", ", weighted, "}");
  }
  CHECK(mismatches == 0);
}

void check_close(const std::string& what, const Tensor& ours, const Tensor& golden) {
  REQUIRE_MESSAGE(ours.shape() == golden.shape(), what, ": ", shape_str(ours.shape()), " vs golden ",
                  shape_str(golden.shape()));
  double error = test::relative_l2(ours, golden);
  MESSAGE(what, ": relative L2 error ", error);
  CHECK(error <= kTolerance);
}

std::vector<int64_t> top5(const Tensor& logits, int64_t row) {
  std::vector<double> all = logits.to_vector();
  int64_t classes = logits.size(1);
  std::vector<int64_t> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  auto value = [&](int64_t c) { return all[static_cast<size_t>(row * classes + c)]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return value(a) > value(b); });
  order.resize(5);
  return order;
}

void check_top5(const std::string& what, const Tensor& ours, const Tensor& golden) {
  for (int64_t row = 0; row < golden.size(0); ++row) {
    INFO(what, " image ", row);
    CHECK(top5(ours, row) == top5(golden, row));
  }
}

// Every trainable parameter has a golden gradient (every s-th element and the full norm) and nothing else has one.
void check_gradients(const std::string& what, Model& model, const GoldenFile& golden) {
  std::set<std::string> golden_names, trainable;
  for (const SafetensorsEntry& e : golden.file.entries())
    if (e.name.rfind("grad.", 0) == 0) golden_names.insert(e.name.substr(5));
  for (auto& np : model.named_parameters())
    if (np.parameter->trainable()) trainable.insert(np.name);
  CHECK(golden_names == trainable);
  double worst_sample = 0, worst_norm = 0;
  std::string worst_sample_name, worst_norm_name;
  for (const std::string& name : golden_names) {
    INFO(what, " gradient of ", name);
    Parameter& p = model.parameter(name);
    REQUIRE(p.has_grad());
    std::vector<double> grad = p.grad().to_vector();
    const int64_t stride = std::stoll(golden.meta("grad_stride." + name));
    Tensor expected = golden.get("grad." + name);
    std::vector<double> sample;
    for (size_t i = 0; i < grad.size(); i += static_cast<size_t>(stride)) sample.push_back(grad[i]);
    REQUIRE(static_cast<int64_t>(sample.size()) == expected.numel());
    double sample_error = test::relative_l2(Tensor::from_vector({expected.numel()}, sample), expected);
    double norm = std::sqrt(std::inner_product(grad.begin(), grad.end(), grad.begin(), 0.0));
    double expected_norm = golden.get("grad_norm." + name).item(0);
    REQUIRE(expected_norm > 0);  // a zero gradient would make the comparison vacuous
    double norm_error = std::fabs(norm - expected_norm) / expected_norm;
    CHECK(sample_error <= kGradientTolerance);
    CHECK(norm_error <= kGradientTolerance);
    if (sample_error >= worst_sample) worst_sample = sample_error, worst_sample_name = name;
    if (norm_error >= worst_norm) worst_norm = norm_error, worst_norm_name = name;
  }
  MESSAGE(what, ": ", golden_names.size(), " gradients, worst relative L2 error of the samples ", worst_sample, " (",
          worst_sample_name, "), worst norm error ", worst_norm, " (", worst_norm_name, ")");
}

// One training step in float64 (as make_golden.py, which says why): cross entropy against the golden labels, then
// backward; checks the loss and the gradients.
void check_training_step(const std::string& what, Context& ctx, Model& model, const Tensor& images,
                         const GoldenFile& golden) {
  model.to_dtype(DType::F64);
  Tensor logits = model.forward(ctx, images.to_dtype(DType::F64), Mode::Train);
  LossResult loss = cross_entropy_loss(ctx, logits, golden_labels(golden));
  double expected = golden.get("loss").item(0);
  MESSAGE(what, ": training loss ", loss.loss, " vs PyTorch ", expected);
  CHECK(std::fabs(loss.loss - expected) <= kGradientTolerance * expected);
  model.backward(ctx, loss.dlogits);
  check_gradients(what, model, golden);
}

#if TL_GOLDEN_HAVE_PTH
// Strict: every tensor of the model from the checkpoint, by name, with equal shape and dtype, and nothing left over.
void load_imported(Context& ctx, Model& model, const ImportedCheckpoint& checkpoint) {
  std::map<std::string, const Tensor*> by_name;
  for (const ImportedTensor& t : checkpoint.tensors) by_name[t.name] = &t.value;
  auto entries = test::state_dict_entries(model);
  REQUIRE(entries.size() == checkpoint.tensors.size());
  for (const test::StateEntry& e : entries) {
    INFO(e.name);
    auto it = by_name.find(e.name);
    REQUIRE(it != by_name.end());
    REQUIRE(it->second->shape() == e.value->shape());
    REQUIRE(it->second->dtype() == e.value->dtype());
    e.value->copy_from(ctx, *it->second);
  }
}
#endif

}  // namespace

TEST_CASE("ResNet18 with formula weights matches torchvision: logits, features, top-5, one step's gradients") {
  Context ctx;
  GoldenFile golden("resnet18_golden.safetensors");
  Tensor images = golden_images();
  Model model;
  build_resnet18(model, std::stoll(golden.meta("num_classes")));
  test::fill_golden_weights(model);
  check_weights_match_golden(model, golden);

  Tensor features;
  Tensor logits = forward_with_tap(ctx, model.root(), images, "flatten", features);
  check_close("resnet18 logits", logits, golden.get("logits"));
  check_close("resnet18 features (pooled, 512)", features, golden.get("features"));
  check_top5("resnet18", logits, golden.get("logits"));

  // As make_golden.py: layer4 and fc train (layer4's BatchNorms on batch statistics), the rest is frozen and its
  // BatchNorms run on running statistics (the frozen-BN rule, layers/batchnorm2d.h).
  model.set_trainable("*", false);
  model.set_trainable("layer4.*", true);
  model.set_trainable("fc.*", true);
  check_training_step("resnet18", ctx, model, images, golden);
}

TEST_CASE("VGG16 with formula weights matches torchvision: logits, features, top-5, one step's gradients") {
  Context ctx;
  GoldenFile golden("vgg16_golden.safetensors");
  Tensor images = golden_images();
  Model model;
  build_vgg16(model, std::stoll(golden.meta("num_classes")));
  test::fill_golden_weights(model);
  check_weights_match_golden(model, golden);
  // PyTorch took its training step in eval mode, which for VGG16 (no BatchNorm) only disables the two dropouts; the
  // same here is Dropout(0), an identity in Train mode as in Eval.
  auto* classifier = dynamic_cast<Sequential*>(model.find_layer("classifier"));
  REQUIRE(classifier != nullptr);
  classifier->replace("2", std::make_unique<Dropout>(0.0));
  classifier->replace("5", std::make_unique<Dropout>(0.0));
  model.assign_paths();

  Tensor features;
  Tensor logits = forward_with_tap(ctx, model.root(), images, "classifier.4", features);
  check_close("vgg16 logits", logits, golden.get("logits"));
  check_close("vgg16 features (classifier.4, 4096)", features, golden.get("features"));
  check_top5("vgg16", logits, golden.get("logits"));

  model.set_trainable("*", false);
  model.set_trainable("features.28.*", true);
  model.set_trainable("classifier.6.*", true);
  check_training_step("vgg16", ctx, model, images, golden);
}

TEST_CASE("the trained ResNet18 backbone read from its .pth matches torchvision") {
  const std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent, and with it the trained resnet18-miniimagenet.pth");
    return;
  }
#if TL_GOLDEN_HAVE_PTH
  Context ctx;
  GoldenFile golden("resnet18_miniimagenet_golden.safetensors");
  Model model;
  build_resnet18(model, std::stoll(golden.meta("num_classes")));
  load_imported(ctx, model, PthFile::open(data + "/weights/resnet18-miniimagenet.pth").read_all());

  Tensor features;
  Tensor logits = forward_with_tap(ctx, model.root(), golden_images(), "flatten", features);
  check_close("resnet18-miniimagenet logits", logits, golden.get("logits"));
  check_close("resnet18-miniimagenet features", features, golden.get("features"));
  check_top5("resnet18-miniimagenet", logits, golden.get("logits"));
#else
  MESSAGE("skipped: weights/pth.h (the .pth reader) is not in this tree yet");
#endif
}
