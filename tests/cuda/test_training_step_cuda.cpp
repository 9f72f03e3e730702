// One training step of ResNet18 on the GPU against the same step on the CPU: the loss, every trainable gradient,
// SGD's momentum buffers, every updated parameter and the BatchNorm running statistics; once with everything
// training (BatchNorm on batch statistics) and once fine-tuning layer4.* and fc.* (frozen BatchNorm on running
// statistics, frozen tensors untouched). Then Model::to and Optimizer::to moving a model, its gradients and its
// optimizer state between the devices in the middle of training.
//
// Two things make a float32 step hard to compare, and the test is built around both.
// 1. A gradient is discontinuous where a ReLU input crosses zero (or a max-pool window has two equal maxima): two
//    correct float32 forwards put a few of ~10^5 ReLU inputs on different sides of zero, and each such flip moves a
//    weight gradient by ~1/sqrt(positions), far above any tolerance (tests/golden/make_golden.py measured 4.6e-3 for
//    one flip in PyTorch). So every BatchNorm that trains gets a bias of +-4 times its weight: its outputs sit four
//    batch standard deviations from zero (a ReLU input then lies within float error of zero with probability
//    ~1e-9), alternating channels on and off after each block's bn1; bn2 and the downsample's BatchNorm are +4 with a
//    weight shrunk 8-fold, so the residual sum stays positive without growing the activations. Only two stem
//    channels are on, which leaves ~500 max-pool windows with real values (a near tie ~4e-6 each).
// 2. BatchNorm's backward subtracts means, so some gradients (bn2.bias in particular) are sums that cancel to a few
//    percent of their terms: the CPU's own float32 step is only ~1e-5..6e-5 away from its float64 step there. A flat
//    1e-4 would leave no room for the GPU's different summation (cuDNN may choose Winograd or FFT algorithms, whose
//    rounding is up to ~10x a direct sum's). Each gradient's tolerance is therefore max(1e-4, 30 * e), where e is the
//    CPU float32 step's error against the CPU float64 step for that tensor, measured here; a wrong kernel errs by
//    1e-2 or more.
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/loss.h"
#include "engine/model.h"
#include "engine/optimizer.h"
#include "layers/batchnorm2d.h"
#include "layers/models/resnet18.h"
#include "support/golden_weights.h"
#include "support/small_model.h"
#include "support/temp_dir.h"
#include "support/test_util.h"
#include "weights/safetensors.h"

using namespace tl;

namespace {

constexpr double kTolerance = 1e-4;
constexpr double kConditioningFactor = 30;  // see point 2 at the top
constexpr double kLearningRate = 0.1;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Point 1 at the top, for every BatchNorm under `under` ("" for all).
void make_relus_decisive(Model& model, const std::string& under) {
  model.visit_layers([&](const std::string& path, Layer& layer) {
    auto* bn = dynamic_cast<BatchNorm2d*>(&layer);
    if (!bn || path.rfind(under, 0) != 0) return;
    const bool before_relu = path == "bn1" || ends_with(path, ".bn1");
    float* gamma = bn->weight.value.data<float>();
    float* beta = bn->bias.value.data<float>();
    for (int64_t c = 0; c < bn->channels(); ++c) {
      bool on = path == "bn1" ? c < 2 : before_relu ? c % 2 == 0 : true;
      if (!before_relu) gamma[c] /= 8;
      beta[c] = (on ? 4.0f : -4.0f) * gamma[c];
    }
  });
}

struct StepResult {
  double loss = 0;
  std::map<std::string, Tensor> grads, momentum, params, buffers;  // host copies; grads/momentum: trainable only
  std::map<std::string, bool> has_grad, has_state;
};

// zero_grad, forward (Train), cross entropy, backward and one SGD step (momentum 0.9) on the context's device.
StepResult train_step(Context& ctx, Model& model, const Tensor& images, const Tensor& labels) {
  const Device device = ctx.device();
  model.to(ctx, device);
  auto sgd = make_sgd({.momentum = 0.9});
  std::vector<NamedParameter> trainable;
  for (auto& np : model.named_parameters())
    if (np.parameter->trainable()) trainable.push_back(np);
  sgd->add_group(trainable, kLearningRate);
  sgd->zero_grad(ctx);
  Tensor x = images.dtype() == model.parameter("conv1.weight").value.dtype() ? images : images.to_dtype(DType::F64);
  Tensor logits = model.forward(ctx, x.to(ctx, device), Mode::Train);
  LossResult loss = cross_entropy_loss(ctx, logits, labels.to(ctx, device));
  model.backward(ctx, loss.dlogits);
  sgd->step(ctx);

  StepResult r;
  r.loss = loss.loss;
  for (auto& np : model.named_parameters()) {
    Parameter& p = *np.parameter;
    r.has_grad[np.name] = p.has_grad();
    const OptimizerState* state = sgd->state(p);
    r.has_state[np.name] = state != nullptr;
    r.params[np.name] = p.value.to(ctx, Device::CPU).clone();
    if (p.has_grad()) {
      CHECK(p.grad().device() == device);  // gradients live where their parameter does
      r.grads[np.name] = p.grad().to(ctx, Device::CPU);
    }
    if (state) {
      const Tensor& buffer = state->tensors.at("momentum_buffer");
      CHECK(buffer.device() == device);  // and so does the optimizer state
      r.momentum[np.name] = buffer.to(ctx, Device::CPU);
    }
  }
  for (auto& nb : model.named_buffers()) r.buffers[nb.name] = nb.buffer->value.to(ctx, Device::CPU).clone();
  return r;
}

// The same step on the CPU in float32 and float64 and on the GPU (strict FP32), from copies of one initial model.
struct ThreeSteps {
  StepResult cpu32, cpu64, gpu;
  std::map<std::string, Tensor> initial_params, initial_buffers;
};

ThreeSteps run_three(const std::function<void(Model&)>& make, const Tensor& images, const Tensor& labels) {
  ThreeSteps t;
  Model m32, m64, mgpu;
  make(m32);
  make(m64);
  make(mgpu);
  for (auto& np : m32.named_parameters()) t.initial_params[np.name] = np.parameter->value.clone();
  for (auto& nb : m32.named_buffers()) t.initial_buffers[nb.name] = nb.buffer->value.clone();
  m64.to_dtype(DType::F64);
  Context cpu;
  t.cpu32 = train_step(cpu, m32, images, labels);
  t.cpu64 = train_step(cpu, m64, images, labels);
  Context gpu({.device = Device::CUDA, .tf32 = false});
  t.gpu = train_step(gpu, mgpu, images, labels);
  return t;
}

// Loss, gradients, momentum buffers, parameters and running statistics of the GPU step against the CPU's.
void check_against_cpu(const ThreeSteps& t) {
  double loss_error = std::fabs(t.gpu.loss - t.cpu32.loss) / std::fabs(t.cpu32.loss);
  MESSAGE("loss: GPU ", t.gpu.loss, ", CPU ", t.cpu32.loss, ", relative error ", loss_error);
  CHECK(loss_error <= kTolerance);
  double worst_ratio = 0;
  std::string worst;
  for (const auto& [name, want] : t.cpu32.grads) {
    INFO(name);
    REQUIRE(t.gpu.grads.count(name) == 1);
    double conditioning = test::relative_l2(want, t.cpu64.grads.at(name));  // the CPU's own float32 error
    double allowed = std::max(kTolerance, kConditioningFactor * conditioning);
    double error = test::relative_l2(t.gpu.grads.at(name), want);
    INFO("GPU vs CPU ", error, ", CPU float32 vs float64 ", conditioning, ", allowed ", allowed);
    CHECK(test::fully_written(t.gpu.grads.at(name)));
    CHECK(error <= allowed);
    CHECK(test::relative_l2(t.gpu.momentum.at(name), t.cpu32.momentum.at(name)) <= allowed);
    CHECK(test::relative_l2(t.gpu.params.at(name), t.cpu32.params.at(name)) <= kTolerance);
    if (error / allowed >= worst_ratio) {
      worst_ratio = error / allowed;
      worst = str(name, ": error ", error, " of ", allowed, " allowed (CPU float32 vs float64: ", conditioning, ")");
    }
  }
  MESSAGE(t.cpu32.grads.size(), " gradients; the closest to its tolerance: ", worst);
  CHECK(t.gpu.grads.size() == t.cpu32.grads.size());
  for (const auto& [name, want] : t.cpu32.buffers) {
    INFO(name);
    const Tensor& got = t.gpu.buffers.at(name);
    if (want.dtype() == DType::I64) CHECK(test::bit_identical(got, want));
    else CHECK(test::relative_l2(got, want) <= kTolerance);
  }
}

Tensor labels_of(const std::vector<double>& values) {
  return Tensor::from_vector({static_cast<int64_t>(values.size())}, values).to_dtype(DType::I64);
}

}  // namespace

CUDA_TEST_CASE("one ResNet18 training step, everything training, on CUDA matches the CPU") {
  Rng rng(2024);
  Tensor images = test::random_tensor(rng, {2, 3, 48, 48}, DType::F32);  // layer4 at 2x2: 8 values per channel
  Tensor labels = labels_of({3, 8});
  ThreeSteps t = run_three(
      [](Model& m) {
        build_resnet18(m, 10);
        test::fill_golden_weights(m);
        make_relus_decisive(m, "");
      },
      images, labels);
  check_against_cpu(t);
  for (const auto& [name, trained] : t.gpu.has_grad) {
    INFO(name);
    CHECK(trained);
    CHECK(t.gpu.has_state.at(name));
  }
  // Every BatchNorm counted the batch (on the host: Buffer::stays_on_host) and moved its running statistics.
  for (const auto& [name, value] : t.gpu.buffers) {
    INFO(name);
    if (ends_with(name, "num_batches_tracked")) CHECK(value.item() == 1);
    else CHECK_FALSE(test::bit_identical(value, t.initial_buffers.at(name)));
  }
}

CUDA_TEST_CASE("one ResNet18 fine-tuning step of layer4 and fc on CUDA matches the CPU; frozen tensors untouched") {
  Tensor images = SafetensorsFile::open(test::source_dir() + "/tests/golden/golden_inputs.safetensors").read("images");
  Tensor labels = labels_of({0, 1});
  ThreeSteps t = run_three(
      [](Model& m) {
        build_resnet18(m, 10);
        test::fill_golden_weights(m);  // running statistics away from (0, 1): frozen BatchNorm must use them
        make_relus_decisive(m, "layer4");
        m.set_trainable("*", false);
        m.set_trainable("layer4.*", true);
        m.set_trainable("fc.*", true);
      },
      images, labels);
  check_against_cpu(t);
  for (const auto& [name, trained] : t.gpu.has_grad) {
    INFO(name);
    bool trains = name.rfind("layer4.", 0) == 0 || name.rfind("fc.", 0) == 0;
    CHECK(trained == trains);  // frozen: no gradient memory...
    CHECK(t.gpu.has_state.at(name) == trains);  // ...and no optimizer state
    if (!trains) CHECK(test::bit_identical(t.gpu.params.at(name), t.initial_params.at(name)));
  }
  for (const auto& [name, value] : t.gpu.buffers) {
    INFO(name);
    // Frozen BatchNorm ran on its running statistics and changed neither them nor its counter.
    if (name.rfind("layer4.", 0) != 0) CHECK(test::bit_identical(value, t.initial_buffers.at(name)));
    else if (ends_with(name, "num_batches_tracked")) CHECK(value.item() == 1);
  }
}

CUDA_TEST_CASE("Model::to and Optimizer::to move parameters, buffers, gradients and optimizer state mid-training") {
  Rng rng(8);
  Tensor x = test::random_tensor(rng, {3, 3, 9, 9}, DType::F32);
  Tensor y = labels_of({0, 2, 1});
  struct Run {
    Model model;
    std::unique_ptr<Optimizer> sgd = make_sgd({.momentum = 0.9});
    std::vector<double> losses;
  };
  auto start = [](Run& r) {
    test::build_small_model(r.model);
    Rng init(21);
    r.model.reset_parameters(init);
    r.sgd->add_group(r.model.named_parameters(), 0.05);
  };
  auto step = [&](Run& r, Context& ctx) {
    r.sgd->zero_grad(ctx);
    Tensor logits = r.model.forward(ctx, x.to(ctx, ctx.device()), Mode::Train);
    LossResult loss = cross_entropy_loss(ctx, logits, y.to(ctx, ctx.device()));
    r.model.backward(ctx, loss.dlogits);
    r.sgd->step(ctx);
    r.losses.push_back(loss.loss);
  };
  auto check_device = [&](Run& r, Device device) {
    for (auto& np : r.model.named_parameters()) {
      INFO(np.name);
      CHECK(np.parameter->value.device() == device);
      if (np.parameter->has_grad()) CHECK(np.parameter->grad().device() == device);
      if (const OptimizerState* s = r.sgd->state(*np.parameter))
        for (auto& [k, t] : s->tensors) CHECK(t.device() == device);
    }
    for (auto& nb : r.model.named_buffers()) {
      INFO(nb.name);
      CHECK(nb.buffer->value.device() == (nb.buffer->stays_on_host ? Device::CPU : device));
    }
  };

  Context gpu({.device = Device::CUDA, .seed = 3, .tf32 = false});
  Context cpu({.seed = 3});
  Run moved, stayed;
  start(moved);
  start(stayed);
  for (int i = 0; i < 3; ++i) step(stayed, cpu);

  moved.model.to(gpu, Device::CUDA);
  check_device(moved, Device::CUDA);
  step(moved, gpu);
  check_device(moved, Device::CUDA);
  // Through the context the model ran on: its stream orders the copies after the step's kernels.
  moved.model.to(gpu, Device::CPU);
  moved.sgd->to(gpu, Device::CPU);
  check_device(moved, Device::CPU);
  step(moved, cpu);
  moved.model.to(gpu, Device::CUDA);  // the optimizer state is left behind: step() brings it along
  step(moved, gpu);
  check_device(moved, Device::CUDA);

  // The momentum carried across both moves: the same three steps as on the CPU alone.
  for (int i = 0; i < 3; ++i) {
    INFO("step ", i + 1, ": ", moved.losses[i], " vs ", stayed.losses[i]);
    CHECK(std::fabs(moved.losses[i] - stayed.losses[i]) <= kTolerance * std::fabs(stayed.losses[i]));
  }
  auto a = moved.model.named_parameters(), b = stayed.model.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK(test::relative_l2(a[i].parameter->value.to(gpu, Device::CPU), b[i].parameter->value) <= kTolerance);
  }
  for (auto& nb : moved.model.named_buffers())
    if (nb.buffer->stays_on_host) CHECK(nb.buffer->value.item() == 3);  // three batches counted, wherever they ran

  // A device model is saved through its Context; without one the checkpoint refuses rather than racing the stream.
  test::TempDir dir("training_step_cuda");
  CHECK_THROWS_WITH_AS(save_checkpoint(dir.file("no.safetensors"), moved.model), doctest::Contains("needs a CPU model"),
                       Error);
  save_checkpoint(gpu, dir.file("m.safetensors"), moved.model);
  Model loaded;
  test::build_small_model(loaded);
  loaded.to(gpu, Device::CUDA);
  load_checkpoint(gpu, dir.file("m.safetensors"), loaded);
  auto c = loaded.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK(c[i].parameter->value.is_cuda());
    CHECK(test::bit_identical(c[i].parameter->value.to(gpu, Device::CPU), a[i].parameter->value.to(gpu, Device::CPU)));
  }
}
