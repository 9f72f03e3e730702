// Layers and whole models on the GPU against the same layers and models on the CPU (the specification): every layer
// type forward and backward, ResNet18 and VGG16 logits with TF32 off and on, the trained backbone against PyTorch's
// golden logits, what a frozen model keeps in device memory, and the error a batch that does not fit gives.
//
// Tolerances (DESIGN.md, "CPU vs CUDA"): 1e-5 relative L2 for BatchNorm, ReLU, pooling and dropout (double
// statistics or exact gathers on both sides); 1e-4 where a convolution or GEMM sums in another order in strict FP32
// (cuDNN's algorithms against im2col + OpenBLAS); 5e-3 with TF32 tensor cores (10-bit mantissas). Parameter
// gradients are pre-filled with the same random values on both sides, so a backward that overwrites instead of
// accumulating is caught.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/caching_allocator.h"
#include "engine/context.h"
#include "engine/cuda_state.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "layers/adaptive_avgpool2d.h"
#include "layers/avgpool2d.h"
#include "layers/basic_block.h"
#include "layers/batchnorm2d.h"
#include "layers/conv2d.h"
#include "layers/dropout.h"
#include "layers/flatten.h"
#include "layers/linear.h"
#include "layers/maxpool2d.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"
#include "layers/relu.h"
#include "support/golden_weights.h"
#include "support/test_util.h"
#include "weights/pth.h"
#include "weights/safetensors.h"

using namespace tl;

namespace {

constexpr double kExactishTolerance = 1e-5;  // BN, ReLU, pooling, dropout (see the top of the file)
constexpr double kStrictTolerance = 1e-4;    // convolution / GEMM in strict FP32
constexpr double kTf32Tolerance = 5e-3;      // TF32 tensor cores

using LayerFactory = std::function<std::unique_ptr<Layer>()>;
using InputMaker = std::function<Tensor(Rng&)>;

std::unique_ptr<Model> wrap(std::unique_ptr<Layer> layer) {
  auto model = std::make_unique<Model>();
  model->root().add("layer", std::move(layer));
  model->assign_paths();
  return model;
}

// Values and trainable flags of `from` into `to` (same structure, both on the CPU).
void copy_state(Context& ctx, Model& from, Model& to) {
  auto a = from.named_parameters(), b = to.named_parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    b[i].parameter->value.copy_from(ctx, a[i].parameter->value);
    b[i].parameter->set_trainable(a[i].parameter->trainable());
  }
  auto c = from.named_buffers(), d = to.named_buffers();
  REQUIRE(c.size() == d.size());
  for (size_t i = 0; i < c.size(); ++i) d[i].buffer->value.copy_from(ctx, c[i].buffer->value);
}

// The caching allocator hands a freed block to the next request of its size class: a few NaN-filled blocks of each
// output's size, freed just before the layer runs, make its outputs start out poisoned, so an element that a kernel
// forgets to write shows up as NaN.
void poison_allocator_cache(Context& ctx, const std::vector<Shape>& shapes) {
  std::vector<Tensor> held;
  for (const Shape& shape : shapes)
    for (int i = 0; i < 4; ++i) held.push_back(test::poisoned_cuda(ctx, shape));
}

struct LayerOutcome {
  Tensor y, dx;                     // on the host
  std::vector<Tensor> grads;        // per parameter, host; undefined when it has none
  std::vector<Tensor> params, buffers;
};

// One forward (and, in Train mode, one backward with dx) of the model's only layer on the context's device.
LayerOutcome run_once(Context& ctx, Model& model, const Tensor& x, Mode mode, const Tensor& dy,
                      const std::vector<Tensor>& grad_prefill) {
  Device device = ctx.device();
  if (device == Device::CUDA) poison_allocator_cache(ctx, {dy.shape(), x.shape()});
  Layer& layer = model.root().at(0);
  auto params = model.named_parameters();
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].parameter->trainable()) params[i].parameter->grad(ctx).copy_from(ctx, grad_prefill[i]);
  layer.plan_backward(true);
  LayerOutcome out;
  Tensor y = layer.forward(ctx, x.to(ctx, device), mode);
  out.y = y.to(ctx, Device::CPU);
  if (mode == Mode::Train) out.dx = layer.backward(ctx, dy.to(ctx, device), true).to(ctx, Device::CPU);
  for (auto& np : params) {
    Parameter& p = *np.parameter;
    out.grads.push_back(p.has_grad() ? p.grad().to(ctx, Device::CPU) : Tensor());
    out.params.push_back(p.value.to(ctx, Device::CPU).clone());
  }
  for (auto& nb : model.named_buffers()) out.buffers.push_back(nb.buffer->value.to(ctx, Device::CPU).clone());
  return out;
}

// The layer made by `make`, set up by `setup` (values, trainable flags) on the host, then run on the CPU and on the
// GPU with the same input, output gradient and RNG seed (dropout), compared at `tolerance`.
void check_layer(const std::string& what, const LayerFactory& make, const std::function<void(Model&, Rng&)>& setup,
                 const InputMaker& input, Mode mode, double tolerance) {
  INFO(what);
  Context cpu({.seed = 77});
  Context gpu({.device = Device::CUDA, .seed = 77, .tf32 = false});
  Rng rng(hash_u64(1234, std::hash<std::string>{}(what)));
  auto host = wrap(make());
  if (setup) setup(*host, rng);
  auto dev = wrap(make());
  copy_state(cpu, *host, *dev);
  dev->to(gpu, Device::CUDA);
  std::vector<Tensor> initial_buffers;
  for (auto& nb : host->named_buffers()) initial_buffers.push_back(nb.buffer->value.clone());
  std::vector<Tensor> prefill;
  for (auto& np : host->named_parameters())
    prefill.push_back(test::random_tensor(rng, np.parameter->value.shape(), DType::F32));

  Tensor x = input(rng);
  // dy is shaped like y: an Eval forward of a twin tells the shape without touching state or the RNG.
  auto shape_probe = wrap(make());
  copy_state(cpu, *host, *shape_probe);
  Shape y_shape = shape_probe->root().at(0).forward(cpu, x, Mode::Eval).shape();
  Tensor dy = test::random_tensor(rng, y_shape, DType::F32);

  LayerOutcome want = run_once(cpu, *host, x, mode, dy, prefill);
  LayerOutcome got = run_once(gpu, *dev, x, mode, dy, prefill);
  CHECK(test::fully_written(got.y));
  double y_error = test::relative_l2(got.y, want.y);
  MESSAGE(what, ": y error ", y_error);
  CHECK(y_error <= tolerance);
  if (mode == Mode::Train) {
    CHECK(test::fully_written(got.dx));
    CHECK(test::relative_l2(got.dx, want.dx) <= tolerance);
  }
  auto names = host->named_parameters();
  for (size_t i = 0; i < names.size(); ++i) {
    INFO(names[i].name);
    // Forward and backward never change a parameter; frozen ones hold no gradient memory on either side.
    CHECK(test::bit_identical(got.params[i], want.params[i]));
    REQUIRE(got.grads[i].defined() == want.grads[i].defined());
    CHECK(want.grads[i].defined() == names[i].parameter->trainable());
    if (got.grads[i].defined()) CHECK(test::relative_l2(got.grads[i], want.grads[i]) <= tolerance);
  }
  for (size_t i = 0; i < got.buffers.size(); ++i) {
    if (got.buffers[i].dtype() == DType::I64) CHECK(test::bit_identical(got.buffers[i], want.buffers[i]));
    else CHECK(test::relative_l2(got.buffers[i], want.buffers[i]) <= kExactishTolerance);
    // Eval and frozen BatchNorm leave their statistics and counter alone.
    bool updates = mode == Mode::Train;
    if (auto* bn = dynamic_cast<BatchNorm2d*>(&host->root().at(0))) updates = updates && !bn->frozen();
    if (!updates) CHECK(test::bit_identical(got.buffers[i], initial_buffers[i]));
  }
}

InputMaker uniform(Shape shape) {
  return [shape](Rng& rng) { return test::random_tensor(rng, shape, DType::F32); };
}
InputMaker away_from_zero(Shape shape) {  // ReLU's kink
  return [shape](Rng& rng) { return test::random_away_from_zero(rng, shape, DType::F32); };
}
InputMaker distinct(Shape shape) {  // max-pool ties
  return [shape](Rng& rng) { return test::random_distinct(rng, shape, DType::F32, 1e-2); };
}

// BatchNorm weight/bias and running statistics away from their identity defaults.
void randomize_batchnorms(Model& model, Rng& rng) {
  model.visit_layers([&](const std::string&, Layer& layer) {
    auto* bn = dynamic_cast<BatchNorm2d*>(&layer);
    if (!bn) return;
    Shape c{bn->channels()};
    bn->weight.value = test::random_tensor(rng, c, DType::F32, 0.5, 1.5);
    bn->bias.value = test::random_tensor(rng, c, DType::F32, -0.5, 0.5);
    bn->running_mean.value = test::random_tensor(rng, c, DType::F32, -0.3, 0.3);
    bn->running_var.value = test::random_tensor(rng, c, DType::F32, 0.5, 2.0);
  });
}

void freeze_all(Model& model) { model.set_trainable("*", false); }

}  // namespace

CUDA_TEST_CASE("Conv2d and Linear on CUDA match the CPU: forward, dx, weight and bias gradients, frozen variants") {
  auto reset = [](Model& m, Rng& rng) { m.reset_parameters(rng); };
  check_layer("conv 3x3 stride 2 pad 1 with bias", [] { return std::make_unique<Conv2d>(5, 7, 3, 2, 1, true); }, reset,
              uniform({3, 5, 11, 9}), Mode::Train, kStrictTolerance);
  check_layer("conv 7x7 stride 2 pad 3 (ResNet's stem)", [] { return std::make_unique<Conv2d>(3, 8, 7, 2, 3, false); },
              reset, uniform({2, 3, 33, 31}), Mode::Train, kStrictTolerance);
  check_layer("conv 1x1, weight frozen, bias trains",
              [] { return std::make_unique<Conv2d>(6, 4, 1, 1, 0, true); },
              [&](Model& m, Rng& rng) { reset(m, rng); m.set_trainable("layer.weight", false); },
              uniform({2, 6, 5, 5}), Mode::Train, kStrictTolerance);
  check_layer("conv 3x3 frozen: dx only", [] { return std::make_unique<Conv2d>(4, 5, 3, 1, 1, true); },
              [&](Model& m, Rng& rng) { reset(m, rng); freeze_all(m); }, uniform({2, 4, 6, 7}), Mode::Train,
              kStrictTolerance);
  check_layer("conv eval", [] { return std::make_unique<Conv2d>(5, 7, 3, 1, 1, true); }, reset, uniform({1, 5, 9, 9}),
              Mode::Eval, kStrictTolerance);
  check_layer("linear", [] { return std::make_unique<Linear>(37, 11); }, reset, uniform({5, 37}), Mode::Train,
              kStrictTolerance);
  check_layer("linear, weight frozen", [] { return std::make_unique<Linear>(512, 3); },
              [&](Model& m, Rng& rng) { reset(m, rng); m.set_trainable("layer.weight", false); },
              uniform({4, 512}), Mode::Train, kStrictTolerance);
  check_layer("linear, one row", [] { return std::make_unique<Linear>(9, 1); }, reset, uniform({1, 9}), Mode::Train,
              kStrictTolerance);
}

CUDA_TEST_CASE("BatchNorm2d on CUDA matches the CPU: train (statistics, counter), eval, frozen") {
  auto make = [] { return std::make_unique<BatchNorm2d>(6); };
  check_layer("batchnorm train", make, randomize_batchnorms, uniform({4, 6, 5, 7}), Mode::Train, kExactishTolerance);
  check_layer("batchnorm eval", make, randomize_batchnorms, uniform({3, 6, 4, 4}), Mode::Eval, kExactishTolerance);
  check_layer("batchnorm frozen (train mode, running statistics)", make,
              [](Model& m, Rng& rng) { randomize_batchnorms(m, rng); freeze_all(m); }, uniform({4, 6, 5, 7}),
              Mode::Train, kExactishTolerance);
}

CUDA_TEST_CASE("ReLU, pooling, dropout and flatten layers on CUDA match the CPU") {
  check_layer("relu", [] { return std::make_unique<ReLU>(); }, nullptr, away_from_zero({3, 4, 5, 6}), Mode::Train,
              kExactishTolerance);
  check_layer("maxpool 3 stride 2 pad 1", [] { return std::make_unique<MaxPool2d>(3, 2, 1); }, nullptr,
              distinct({2, 3, 9, 11}), Mode::Train, kExactishTolerance);
  check_layer("maxpool 2", [] { return std::make_unique<MaxPool2d>(2); }, nullptr, distinct({2, 3, 8, 7}), Mode::Train,
              kExactishTolerance);
  check_layer("avgpool 3 stride 2 pad 1", [] { return std::make_unique<AvgPool2d>(3, 2, 1); }, nullptr,
              uniform({2, 3, 9, 11}), Mode::Train, kExactishTolerance);
  check_layer("adaptive avgpool 1x1", [] { return std::make_unique<AdaptiveAvgPool2d>(1, 1); }, nullptr,
              uniform({2, 5, 7, 7}), Mode::Train, kExactishTolerance);
  check_layer("adaptive avgpool 7x7 of 5x5 (replicates)", [] { return std::make_unique<AdaptiveAvgPool2d>(7, 7); },
              nullptr, uniform({2, 3, 5, 5}), Mode::Train, kExactishTolerance);
  // Same seed on both contexts, and the CUDA twin draws the CPU's hash mask: the outputs are equal, not close.
  check_layer("dropout 0.3", [] { return std::make_unique<Dropout>(0.3); }, nullptr, uniform({4, 1001}), Mode::Train,
              kExactishTolerance);
  check_layer("dropout eval", [] { return std::make_unique<Dropout>(0.3); }, nullptr, uniform({4, 33}), Mode::Eval,
              kExactishTolerance);
  check_layer("flatten", [] { return std::make_unique<Flatten>(); }, nullptr, uniform({2, 3, 4, 5}), Mode::Train,
              kExactishTolerance);
}

CUDA_TEST_CASE("BasicBlock on CUDA matches the CPU, with and without the downsample shortcut") {
  auto setup = [](Model& m, Rng& rng) {
    m.reset_parameters(rng);
    randomize_batchnorms(m, rng);
  };
  check_layer("basic block 4->6 stride 2 (downsample)", [] { return std::make_unique<BasicBlock>(4, 6, 2); }, setup,
              uniform({2, 4, 9, 9}), Mode::Train, kStrictTolerance);
  check_layer("basic block 6->6 (identity)", [] { return std::make_unique<BasicBlock>(6, 6, 1); }, setup,
              uniform({2, 6, 5, 5}), Mode::Train, kStrictTolerance);
  check_layer("basic block, conv1/bn1 frozen", [] { return std::make_unique<BasicBlock>(6, 6, 1); },
              [&](Model& m, Rng& rng) {
                setup(m, rng);
                m.set_trainable("layer.conv1.*", false);
                m.set_trainable("layer.bn1.*", false);
              },
              uniform({2, 6, 5, 5}), Mode::Train, kStrictTolerance);
  check_layer("basic block eval", [] { return std::make_unique<BasicBlock>(4, 6, 2); }, setup, uniform({2, 4, 9, 9}),
              Mode::Eval, kStrictTolerance);
}

// ---- Whole models.

namespace {

Tensor golden_images() {
  return SafetensorsFile::open(test::source_dir() + "/tests/golden/golden_inputs.safetensors").read("images");
}

// Rows [row, row+1) of x, mirrored left to right.
Tensor mirrored_row(const Tensor& x, int64_t row) {
  Tensor one = x.slice(row, row + 1).clone();
  int64_t w = one.size(3), lines = one.numel() / w;
  float* p = one.data<float>();
  for (int64_t l = 0; l < lines; ++l) std::reverse(p + l * w, p + (l + 1) * w);
  return one;
}

Tensor concat_rows(const Tensor& a, const Tensor& b) {
  Shape shape = a.shape();
  shape[0] = a.size(0) + b.size(0);
  Tensor out = Tensor::empty(shape);
  std::copy(a.data<float>(), a.data<float>() + a.numel(), out.data<float>());
  std::copy(b.data<float>(), b.data<float>() + b.numel(), out.data<float>() + a.numel());
  return out;
}

double l2_norm(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector()) s += v * v;
  return std::sqrt(s);
}

std::vector<int64_t> top5(const Tensor& logits, int64_t row) {
  int64_t classes = logits.size(1);
  std::vector<double> v = logits.slice(row, row + 1).to_vector();
  std::vector<int64_t> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  order.resize(5);
  return order;
}

// The smallest difference between neighbours among each row's six largest logits.
double smallest_top_gap(const Tensor& logits) {
  double gap = INFINITY;
  for (int64_t row = 0; row < logits.size(0); ++row) {
    std::vector<double> v = logits.slice(row, row + 1).to_vector();
    std::sort(v.rbegin(), v.rend());
    for (size_t k = 0; k < 5 && k + 1 < v.size(); ++k) gap = std::min(gap, v[k] - v[k + 1]);
  }
  return gap;
}

void check_top5(const Tensor& got, const Tensor& want) {
  for (int64_t row = 0; row < want.size(0); ++row) {
    INFO("image ", row);
    CHECK(top5(got, row) == top5(want, row));
  }
}

// Eval logits of `model` on the GPU, TF32 off and on, against its CPU logits. The inputs are chosen so that the
// tolerance decides the top-5 question: no two of a row's six largest CPU logits are closer than
// sqrt(2) * tolerance * ||logits||, so an error within the tolerance cannot reorder them (checked first: other
// weights or images that break this premise fail here, not by luck below).
void check_model_logits(const std::string& what, Model& model, const Tensor& images) {
  Context cpu;
  Tensor want = model.forward(cpu, images, Mode::Eval);
  REQUIRE(smallest_top_gap(want) > std::sqrt(2.0) * kTf32Tolerance * l2_norm(want));
  Context gpu({.device = Device::CUDA, .tf32 = false});
  model.to(gpu, Device::CUDA);
  Tensor x = images.to(gpu, Device::CUDA);
  for (bool tf32 : {false, true}) {
    INFO(what, tf32 ? " with TF32" : " in strict FP32");
    gpu.set_tf32(tf32);
    Tensor got = model.forward(gpu, x, Mode::Eval).to(gpu, Device::CPU);
    double error = test::relative_l2(got, want);
    MESSAGE(what, tf32 ? " TF32" : " FP32", ": logits relative L2 error ", error);
    CHECK(error <= (tf32 ? kTf32Tolerance : kStrictTolerance));
    check_top5(got, want);
  }
  model.to(gpu, Device::CPU);
}

}  // namespace

CUDA_TEST_CASE("ResNet18 logits on CUDA match the CPU, TF32 off and on, with the same top-5") {
  Model model;
  build_resnet18(model, 10);
  test::fill_golden_weights(model);  // He-uniform convolutions, BatchNorm statistics away from identity
  check_model_logits("resnet18", model, golden_images());
}

CUDA_TEST_CASE("VGG16 logits on CUDA match the CPU, TF32 off and on, with the same top-5") {
  Model model;
  build_vgg16(model, 10);
  test::fill_golden_weights(model);
  // The ant as it is and the bee mirrored: the plain bee's 5th and 6th logits lie 0.003 apart, which TF32 may swap.
  Tensor images = golden_images();
  check_model_logits("vgg16", model, concat_rows(images.slice(0, 1).clone(), mirrored_row(images, 1)));
}

CUDA_TEST_CASE("the trained ResNet18 backbone on CUDA matches PyTorch's golden logits") {
  const std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent, and with it resnet18-miniimagenet.pth");
    return;
  }
  SafetensorsFile golden =
      SafetensorsFile::open(test::source_dir() + "/tests/golden/resnet18_miniimagenet_golden.safetensors");
  Model model;
  build_resnet18(model, std::stoll(golden.metadata().at("num_classes")));
  Context gpu({.device = Device::CUDA, .tf32 = false});
  ImportedCheckpoint checkpoint = PthFile::open(data + "/weights/resnet18-miniimagenet.pth").read_all();
  auto entries = test::state_dict_entries(model);
  REQUIRE(entries.size() == checkpoint.tensors.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    REQUIRE(entries[i].name == checkpoint.tensors[i].name);
    entries[i].value->copy_from(gpu, checkpoint.tensors[i].value);
  }
  model.to(gpu, Device::CUDA);
  Tensor got = model.forward(gpu, golden_images().to(gpu, Device::CUDA), Mode::Eval).to(gpu, Device::CPU);
  Tensor want = golden.read("logits");
  double error = test::relative_l2(got, want);
  MESSAGE("resnet18-miniimagenet on CUDA vs PyTorch: logits relative L2 error ", error);
  CHECK(error <= kStrictTolerance);  // as the CPU path's golden test: float32 in another summation order
  check_top5(got, want);
}

// ---- What frozen layers keep, on the device.

CUDA_TEST_CASE("on CUDA an eval forward keeps nothing and head-only training keeps only the head's input") {
  Context gpu({.device = Device::CUDA, .tf32 = false});
  Rng rng(5);
  Model model;
  build_resnet18(model, 10);
  model.reset_parameters(rng);
  model.to(gpu, Device::CUDA);
  Tensor x = test::random_tensor(rng, {4, 3, 64, 64}, DType::F32).to(gpu, Device::CUDA);
  Tensor dlogits = test::random_tensor(rng, {4, 10}, DType::F32).to(gpu, Device::CUDA);
  auto in_use = [&] { return gpu.cuda_allocator()->stats().bytes_in_use; };
  const size_t logits_block = CachingAllocator::size_class(4 * 10 * sizeof(float));

  model.forward(gpu, x, Mode::Eval);  // first pass: algorithms found, workspace grown
  size_t before = in_use();
  {
    Tensor logits = model.forward(gpu, x, Mode::Eval);
    CHECK(in_use() - before == logits_block);  // every activation was released on the way
  }
  CHECK(in_use() == before);

  model.set_trainable("*", false);
  model.set_trainable("fc.*", true);
  model.forward(gpu, x, Mode::Train);  // first pass of this plan; its backward makes fc's gradient memory
  model.backward(gpu, dlogits);
  before = in_use();
  {
    Tensor logits = model.forward(gpu, x, Mode::Train);
    // fc keeps its input (the pooled [4,512] features) for its weight gradient; nothing below it keeps anything.
    CHECK(in_use() - before == logits_block + CachingAllocator::size_class(4 * 512 * sizeof(float)));
    Layer* layer4 = model.find_layer("layer4");
    Layer* conv1 = model.find_layer("conv1");
    int64_t layer4_calls = layer4->backward_calls(), conv1_calls = conv1->backward_calls();
    model.backward(gpu, dlogits);
    CHECK(layer4->backward_calls() == layer4_calls);  // backward stops at the head
    CHECK(conv1->backward_calls() == conv1_calls);
    CHECK(in_use() - before == logits_block);  // fc released its input
  }
  for (auto& np : model.named_parameters()) {
    INFO(np.name);
    CHECK(np.parameter->has_grad() == (np.name.rfind("fc.", 0) == 0));
    if (np.parameter->has_grad()) CHECK(np.parameter->grad().is_cuda());
  }
}

// ---- A batch that does not fit.

namespace {

// The real driver calls under a byte budget: a full device, for one Context, without starving other processes that
// share the GPU (the whole test suite runs in parallel).
RawDeviceMemory budgeted_device_memory(size_t budget) {
  struct Budget {
    size_t limit, used = 0;
    std::unordered_map<void*, size_t> sizes;
  };
  auto b = std::make_shared<Budget>();
  b->limit = budget;
  RawDeviceMemory real = cuda_raw_device_memory(), raw = real;
  raw.allocate = [b, real](size_t bytes) -> void* {
    if (b->used + bytes > b->limit) return nullptr;  // "out of memory", as the driver says it
    void* p = real.allocate(bytes);
    if (p) b->used += b->sizes[p] = bytes;
    return p;
  };
  raw.free = [b, real](void* p) {
    auto it = b->sizes.find(p);
    if (it != b->sizes.end()) {
      b->used -= it->second;
      b->sizes.erase(it);
    }
    real.free(p);
  };
  raw.memory_info = [b](size_t& free_bytes, size_t& total_bytes) {
    total_bytes = b->limit;
    free_bytes = b->limit - b->used;
  };
  return raw;
}

}  // namespace

CUDA_TEST_CASE("a training batch that does not fit is one tl::Error naming the bytes and --batch-size; the context "
               "recovers") {
  Context gpu({.device = Device::CUDA, .tf32 = false});
  gpu.cuda().allocator = std::make_shared<CachingAllocator>(budgeted_device_memory(size_t(1) << 30));  // before use
  Rng rng(4);
  Model model;
  build_resnet18(model, 10);
  model.reset_parameters(rng);
  model.to(gpu, Device::CUDA);
  // 64 images of 224 px: ResNet18 training keeps about 1.5 GiB of activations, over the 1 GiB budget.
  Tensor big = test::random_tensor(rng, {64, 3, 224, 224}, DType::F32);
  std::string message;
  try {
    model.forward(gpu, big.to(gpu, Device::CUDA), Mode::Train);
  } catch (const Error& e) {
    message = e.what();
  }
  INFO(message);
  CHECK(message.find("out of device memory: asked for ") != std::string::npos);
  CHECK(message.find("lower --batch-size") != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);  // one line when an app prints it (apps/main.cpp)

  // Nothing is sticky: the same context and model train on a batch that fits.
  Tensor x = test::random_tensor(rng, {2, 3, 64, 64}, DType::F32).to(gpu, Device::CUDA);
  Tensor labels = Tensor::from_vector({2}, std::vector<double>{1, 7}).to_dtype(DType::I64).to(gpu, Device::CUDA);
  LossResult loss = cross_entropy_loss(gpu, model.forward(gpu, x, Mode::Train), labels);
  model.backward(gpu, loss.dlogits);
  gpu.synchronize();
  CHECK(std::isfinite(loss.loss));
  CHECK(model.parameter("conv1.weight").grad().is_cuda());
}
