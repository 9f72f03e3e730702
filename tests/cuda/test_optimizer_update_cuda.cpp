// The fused optimizer updates on CUDA against their CPU twins: 100 steps from the same random
// parameters with a fresh random gradient each step (made on the host, uploaded), every option
// combination, then parameters and every state tensor compared. Both twins do the arithmetic in
// double and round once to float, so they agree to ~1 float ulp; an error anywhere in a rule
// (a missing weight decay, dampening, bias correction or eps) moves the parameters by far more
// than the 1e-5 relative L2 allowed over 100 steps.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "engine/optimizer.h"
#include "kernels/optimizer_update.h"
#include "support/test_util.h"

using namespace tl;

namespace {

enum class Rule { Sgd, Adam, Rmsprop };

struct OptimizerCase {
  std::string name;
  Rule rule;
  double lr;
  double momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-3;  // eps large enough that a misplaced eps shows
  bool decoupled = false;
  double alpha = 0.99;
};

std::vector<OptimizerCase> all_cases() {
  std::vector<OptimizerCase> cases;
  for (double wd : {0.0, 0.05}) {
    std::string suffix = wd != 0 ? " + weight decay" : "";
    cases.push_back({.name = "sgd" + suffix, .rule = Rule::Sgd, .lr = 0.01, .weight_decay = wd});
    cases.push_back({.name = "sgd momentum" + suffix, .rule = Rule::Sgd, .lr = 0.01, .momentum = 0.9,
                     .weight_decay = wd});
    cases.push_back({.name = "sgd momentum dampening" + suffix, .rule = Rule::Sgd, .lr = 0.01, .momentum = 0.9,
                     .dampening = 0.3, .weight_decay = wd});
    cases.push_back({.name = "sgd nesterov" + suffix, .rule = Rule::Sgd, .lr = 0.01, .momentum = 0.9,
                     .weight_decay = wd, .nesterov = true});
    cases.push_back({.name = "adam" + suffix, .rule = Rule::Adam, .lr = 0.01, .weight_decay = wd});
    cases.push_back({.name = "adamw" + suffix, .rule = Rule::Adam, .lr = 0.01, .weight_decay = wd,
                     .decoupled = true});
    cases.push_back({.name = "rmsprop" + suffix, .rule = Rule::Rmsprop, .lr = 0.001, .weight_decay = wd});
    cases.push_back({.name = "rmsprop momentum" + suffix, .rule = Rule::Rmsprop, .lr = 0.001, .momentum = 0.9,
                     .weight_decay = wd});
  }
  return cases;
}

// A parameter and its state on one device; state tensors left undefined when the rule has none.
struct Run {
  Tensor param, buffer, exp_avg, exp_avg_sq, square_avg;
};

bool has_buffer(const OptimizerCase& c) { return c.momentum != 0; }

// A CUDA tensor of n elements; `misaligned` makes it a view one float into a larger allocation, so
// the kernel must take its scalar path.
Tensor device_tensor(Context& ctx, int64_t n, bool misaligned) {
  if (!misaligned) return Tensor::empty(ctx, {n}, DType::F32, Device::CUDA);
  return Tensor::empty(ctx, {n + 1}, DType::F32, Device::CUDA).slice(1, n + 1);
}

Run make_cpu_run(const OptimizerCase& c, const Tensor& start) {
  Run r;
  r.param = start.clone();
  if (has_buffer(c)) r.buffer = Tensor::zeros(start.shape());
  if (c.rule == Rule::Adam) {
    r.exp_avg = Tensor::zeros(start.shape());
    r.exp_avg_sq = Tensor::zeros(start.shape());
  }
  if (c.rule == Rule::Rmsprop) r.square_avg = Tensor::zeros(start.shape());
  return r;
}

Run make_cuda_run(Context& ctx, const OptimizerCase& c, const Tensor& start, bool misaligned) {
  int64_t n = start.numel();
  auto zeros = [&] {
    Tensor t = device_tensor(ctx, n, misaligned);
    t.fill(ctx, 0.0);
    return t;
  };
  Run r;
  r.param = device_tensor(ctx, n, misaligned);
  r.param.copy_from(ctx, start);
  if (has_buffer(c)) {
    if (c.rule == Rule::Sgd) {
      // SGD ignores the buffer's contents on the first step: NaN there must not leak into anything.
      r.buffer = device_tensor(ctx, n, misaligned);
      r.buffer.fill(ctx, std::numeric_limits<double>::quiet_NaN());
    } else {
      r.buffer = zeros();  // RMSprop blends its buffer in from the first step: zero-initialised
    }
  }
  if (c.rule == Rule::Adam) {
    r.exp_avg = zeros();
    r.exp_avg_sq = zeros();
  }
  if (c.rule == Rule::Rmsprop) r.square_avg = zeros();
  return r;
}

void apply(Context& ctx, const OptimizerCase& c, Run& r, const Tensor& grad, int64_t step) {
  Tensor* buffer = r.buffer.defined() ? &r.buffer : nullptr;
  switch (c.rule) {
    case Rule::Sgd:
      sgd_update(ctx, r.param, grad, buffer, c.lr, c.momentum, c.dampening, c.nesterov, c.weight_decay, step == 1);
      break;
    case Rule::Adam:
      adam_update(ctx, r.param, grad, r.exp_avg, r.exp_avg_sq, c.lr, c.beta1, c.beta2, c.eps, c.weight_decay,
                  c.decoupled, step);
      break;
    case Rule::Rmsprop:
      rmsprop_update(ctx, r.param, grad, r.square_avg, buffer, c.lr, c.alpha, c.eps, c.weight_decay, c.momentum);
      break;
  }
}

// Uniform in [-1, 1) straight into a float buffer (the 8M-element case makes 100 of these).
void fill_random(Rng& rng, Tensor& host) {
  float* g = host.data<float>();
  for (int64_t i = 0; i < host.numel(); ++i) g[i] = float(2 * rng.uniform() - 1);
}

void check_same(Context& ctx, const char* what, const Tensor& device, const Tensor& cpu) {
  CAPTURE(what);
  if (!cpu.defined()) return;
  double err = test::cuda_vs_cpu_error(ctx, device, cpu);
  CHECK(err <= 1e-5);
}

void run_case(Context& ctx, const OptimizerCase& c, int64_t n, bool misaligned, uint64_t seed) {
  constexpr int64_t kSteps = 100;
  CAPTURE(c.name);
  CAPTURE(n);
  CAPTURE(misaligned);
  Rng rng(seed);
  Tensor start = Tensor::empty({n});
  fill_random(rng, start);
  Run cpu = make_cpu_run(c, start);
  Run gpu = make_cuda_run(ctx, c, start, misaligned);
  Tensor grad = Tensor::empty({n});
  Tensor grad_device = device_tensor(ctx, n, misaligned);
  for (int64_t step = 1; step <= kSteps; ++step) {
    fill_random(rng, grad);
    grad_device.copy_from(ctx, grad);  // host-to-device: the stream orders it before the kernel
    apply(ctx, c, cpu, grad, step);
    apply(ctx, c, gpu, grad_device, step);
  }
  // The run must have moved the parameters, or comparing them proves nothing.
  CHECK(test::relative_l2(cpu.param, start) > 1e-3);
  check_same(ctx, "param", gpu.param, cpu.param);
  check_same(ctx, "momentum_buffer", gpu.buffer, cpu.buffer);
  check_same(ctx, "exp_avg", gpu.exp_avg, cpu.exp_avg);
  check_same(ctx, "exp_avg_sq", gpu.exp_avg_sq, cpu.exp_avg_sq);
  check_same(ctx, "square_avg", gpu.square_avg, cpu.square_avg);
}

}  // namespace

CUDA_TEST_CASE("fused optimizer updates on CUDA match the CPU twins over 100 steps, every option combination") {
  Context ctx({.device = Device::CUDA});
  uint64_t seed = 100;
  for (const OptimizerCase& c : all_cases()) {
    // 1: only the scalar tail; 1003: 250 float4 groups and a 3-element tail; misaligned: all scalar.
    run_case(ctx, c, 1, false, ++seed);
    run_case(ctx, c, 1003, false, ++seed);
    run_case(ctx, c, 1003, true, ++seed);
  }
}

CUDA_TEST_CASE("fused AdamW on CUDA matches the CPU twin over 100 steps on 8M elements") {
  Context ctx({.device = Device::CUDA});
  // AdamW with weight decay touches the most state; 8M+3 covers many grid-stride rounds and a tail.
  OptimizerCase c{.name = "adamw + weight decay", .rule = Rule::Adam, .lr = 0.01, .weight_decay = 0.05,
                  .decoupled = true};
  run_case(ctx, c, 8 * 1024 * 1024 + 3, false, 7);
}

CUDA_TEST_CASE("optimizers step CUDA parameters like CPU ones (state made on the device)") {
  Context ctx({.device = Device::CUDA});
  struct Made {
    std::unique_ptr<Optimizer> cpu, gpu;
  };
  std::vector<Made> optimizers;
  optimizers.push_back({make_sgd({.momentum = 0.9, .weight_decay = 0.01, .nesterov = true}),
                        make_sgd({.momentum = 0.9, .weight_decay = 0.01, .nesterov = true})});
  optimizers.push_back({make_adam({.weight_decay = 0.01, .decoupled = true}),
                        make_adam({.weight_decay = 0.01, .decoupled = true})});
  optimizers.push_back({make_rmsprop({.weight_decay = 0.01, .momentum = 0.5}),
                        make_rmsprop({.weight_decay = 0.01, .momentum = 0.5})});
  Rng rng(11);
  for (Made& m : optimizers) {
    CAPTURE(m.cpu->name());
    Tensor start = Tensor::empty({37, 5});
    fill_random(rng, start);
    Parameter on_cpu("weight", start.clone());
    Parameter on_gpu("weight", start.clone());
    on_gpu.to(ctx, Device::CUDA);
    m.cpu->add_group({{"fc.weight", &on_cpu}}, 0.01);
    m.gpu->add_group({{"fc.weight", &on_gpu}}, 0.01);
    Tensor grad = Tensor::empty({37, 5});
    for (int step = 0; step < 10; ++step) {
      m.cpu->zero_grad(ctx);
      m.gpu->zero_grad(ctx);
      fill_random(rng, grad);
      on_cpu.grad(ctx).copy_from(ctx, grad);
      on_gpu.grad(ctx).copy_from(ctx, grad);
      m.cpu->step(ctx);
      m.gpu->step(ctx);
    }
    REQUIRE(m.gpu->state(on_gpu) != nullptr);
    CHECK(m.gpu->state(on_gpu)->step == 10);
    for (const auto& [name, tensor] : m.gpu->state(on_gpu)->tensors) {
      CAPTURE(name);
      CHECK(tensor.is_cuda());
      CHECK(test::cuda_vs_cpu_error(ctx, tensor, m.cpu->state(on_cpu)->tensors.at(name)) <= 1e-5);
    }
    CHECK(test::relative_l2(on_cpu.value, start) > 1e-3);
    CHECK(test::cuda_vs_cpu_error(ctx, on_gpu.value, on_cpu.value) <= 1e-5);
  }
}

CUDA_TEST_CASE("CUDA optimizer updates refuse F64 tensors by name") {
  Context ctx({.device = Device::CUDA});
  Tensor p = Tensor::zeros(ctx, {3}, DType::F64, Device::CUDA);
  Tensor g = Tensor::zeros(ctx, {3}, DType::F64, Device::CUDA);
  CHECK_THROWS_WITH(sgd_update(ctx, p, g, nullptr, 0.1, 0, 0, false, 0, true),
                    doctest::Contains("sgd_update: CUDA kernel needs an F32 CUDA tensor"));
}
