// Each optimizer runs three steps on a tiny quadratic problem and is compared with the recurrence
// written out by hand here, element by element, from PyTorch's documented algorithms.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "engine/context.h"
#include "engine/optimizer.h"
#include "engine/schedule.h"
#include "support/test_util.h"

using namespace tl;

namespace {

// Loss 0.5 * sum a_i (w_i - c_i)^2, so the gradient is a_i (w_i - c_i): it depends on the current
// parameter, so an update that goes wrong once shows in every later step.
const std::vector<double> kStart = {0.5, -1.25, 2.0, 0.75, -0.3, 1.5};
const std::vector<double> kCurvature = {1.0, 0.5, 2.0, 0.25, 1.5, 3.0};
const std::vector<double> kCentre = {-0.2, 0.4, 1.0, -1.0, 0.0, 2.5};
constexpr int kSteps = 3;

double gradient_at(size_t i, double w) { return kCurvature[i] * (w - kCentre[i]); }

void set_quadratic_gradient(Context& ctx, Parameter& p) {
  Tensor& g = p.grad(ctx);
  for (int64_t i = 0; i < g.numel(); ++i) {
    double value = gradient_at(size_t(i), p.value.item(i));
    if (g.dtype() == DType::F32) g.data<float>()[i] = float(value);
    else g.data<double>()[i] = value;
  }
}

// Runs kSteps optimizer steps from kStart on a [2,3] parameter and returns its values.
std::vector<double> run(Optimizer& optimizer, double lr, DType dtype = DType::F64) {
  Context ctx;
  Parameter w("weight", Tensor::from_vector({2, 3}, kStart).to_dtype(dtype));
  optimizer.add_group({{"fc.weight", &w}}, lr);
  for (int step = 0; step < kSteps; ++step) {
    optimizer.zero_grad(ctx);
    set_quadratic_gradient(ctx, w);
    optimizer.step(ctx);
  }
  REQUIRE(optimizer.state_count() == 1);
  REQUIRE(optimizer.state(w)->step == kSteps);
  return w.value.to_vector();
}

// The hand-written recurrence: `update(i, t, w)` applies step t (from 1) to element i.
std::vector<double> closed_form(const std::function<double(size_t, int, double)>& update) {
  std::vector<double> w = kStart;
  for (int t = 1; t <= kSteps; ++t)
    for (size_t i = 0; i < w.size(); ++i) w[i] = update(i, t, w[i]);
  return w;
}

// Same formulas in a different evaluation order: only rounding may differ, ~1e-16 per operation.
void check_close(const std::vector<double>& got, const std::vector<double>& expected, double tolerance = 1e-13) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(expected[i]).epsilon(tolerance));
    CHECK(got[i] != kStart[i]);  // every element moved: a no-op update cannot pass
  }
}

}  // namespace

TEST_CASE("sgd without momentum: w -= lr * g") {
  const double lr = 0.1;
  auto expected = closed_form([&](size_t i, int, double w) { return w - lr * gradient_at(i, w); });
  check_close(run(*make_sgd({}), lr), expected);
}

TEST_CASE("sgd with momentum and dampening: b = g first, then mu*b + (1-tau)*g") {
  const double lr = 0.1, mu = 0.9, tau = 0.3;
  std::vector<double> b(6);
  auto expected = closed_form([&](size_t i, int t, double w) {
    double g = gradient_at(i, w);
    b[i] = t == 1 ? g : mu * b[i] + (1 - tau) * g;
    return w - lr * b[i];
  });
  check_close(run(*make_sgd({.momentum = mu, .dampening = tau}), lr), expected);
}

TEST_CASE("sgd with Nesterov momentum: step along g + mu*b") {
  const double lr = 0.05, mu = 0.8;
  std::vector<double> b(6);
  auto expected = closed_form([&](size_t i, int t, double w) {
    double g = gradient_at(i, w);
    b[i] = t == 1 ? g : mu * b[i] + g;
    return w - lr * (g + mu * b[i]);
  });
  check_close(run(*make_sgd({.momentum = mu, .nesterov = true}), lr), expected);
}

TEST_CASE("sgd with weight decay: g += lambda*w, before momentum") {
  const double lr = 0.1, mu = 0.5, lambda = 0.01;
  std::vector<double> b(6);
  auto expected = closed_form([&](size_t i, int t, double w) {
    double g = gradient_at(i, w) + lambda * w;
    b[i] = t == 1 ? g : mu * b[i] + g;
    return w - lr * b[i];
  });
  check_close(run(*make_sgd({.momentum = mu, .weight_decay = lambda}), lr), expected);
}

TEST_CASE("sgd with Keras decay: lr / (1 + decay * completed steps)") {
  const double lr = 0.2, decay = 0.5;
  auto expected = closed_form([&](size_t i, int t, double w) {
    double lr_t = lr / (1 + decay * (t - 1));  // steps completed before step t
    return w - lr_t * gradient_at(i, w);
  });
  auto optimizer = make_sgd({.decay = decay});
  check_close(run(*optimizer, lr), expected);
  CHECK(optimizer->iterations() == kSteps);
  CHECK(optimizer->lr() == doctest::Approx(lr / (1 + decay * kSteps)));
  CHECK(optimizer->base_lr() == lr);
}

TEST_CASE("adam: L2 weight decay in the gradient, bias-corrected moments") {
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, lambda = 0.05;
  std::vector<double> m(6), v(6);
  auto expected = closed_form([&](size_t i, int t, double w) {
    double g = gradient_at(i, w) + lambda * w;
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    double m_hat = m[i] / (1 - std::pow(b1, t));
    double v_hat = v[i] / (1 - std::pow(b2, t));
    return w - lr * m_hat / (std::sqrt(v_hat) + eps);
  });
  check_close(run(*make_adam({.weight_decay = lambda}), lr), expected);
}

TEST_CASE("adamw: decoupled weight decay w *= 1 - lr*lambda, moments from the raw gradient") {
  const double lr = 0.1, b1 = 0.8, b2 = 0.99, eps = 1e-6, lambda = 0.1;
  std::vector<double> m(6), v(6);
  auto expected = closed_form([&](size_t i, int t, double w) {
    double g = gradient_at(i, w);  // evaluated at the weight before decay
    double decayed = w * (1 - lr * lambda);
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    double m_hat = m[i] / (1 - std::pow(b1, t));
    double v_hat = v[i] / (1 - std::pow(b2, t));
    return decayed - lr * m_hat / (std::sqrt(v_hat) + eps);
  });
  auto optimizer = make_adam({.beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = lambda, .decoupled = true});
  check_close(run(*optimizer, lr), expected);
  CHECK(optimizer->name() == "adamw");
}

TEST_CASE("rmsprop without momentum: w -= lr * g / (sqrt(v) + eps)") {
  const double lr = 0.01, alpha = 0.9, eps = 1e-8, lambda = 0.02;
  std::vector<double> v(6);
  auto expected = closed_form([&](size_t i, int, double w) {
    double g = gradient_at(i, w) + lambda * w;
    v[i] = alpha * v[i] + (1 - alpha) * g * g;
    return w - lr * g / (std::sqrt(v[i]) + eps);
  });
  check_close(run(*make_rmsprop({.alpha = alpha, .eps = eps, .weight_decay = lambda}), lr), expected);
}

TEST_CASE("rmsprop with momentum: b = mu*b + g / (sqrt(v) + eps), zero-initialised") {
  const double lr = 0.01, alpha = 0.99, eps = 1e-8, mu = 0.9;
  std::vector<double> v(6), b(6);
  auto expected = closed_form([&](size_t i, int, double w) {
    double g = gradient_at(i, w);
    v[i] = alpha * v[i] + (1 - alpha) * g * g;
    b[i] = mu * b[i] + g / (std::sqrt(v[i]) + eps);
    return w - lr * b[i];
  });
  check_close(run(*make_rmsprop({.alpha = alpha, .eps = eps, .momentum = mu}), lr), expected);
}

TEST_CASE("optimizer state lives in the parameter's dtype; F32 tracks the double recurrence") {
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  std::vector<double> m(6), v(6);
  auto expected = closed_form([&](size_t i, int t, double w) {
    double g = gradient_at(i, w);
    m[i] = b1 * m[i] + (1 - b1) * g;
    v[i] = b2 * v[i] + (1 - b2) * g * g;
    return w - lr * (m[i] / (1 - std::pow(b1, t))) / (std::sqrt(v[i] / (1 - std::pow(b2, t))) + eps);
  });
  Context ctx;
  auto optimizer = make_adam({});
  Parameter w("weight", Tensor::from_vector({2, 3}, kStart).to_dtype(DType::F32));
  optimizer->add_group({{"w", &w}}, lr);
  for (int step = 0; step < kSteps; ++step) {
    set_quadratic_gradient(ctx, w);
    optimizer->step(ctx);
  }
  const OptimizerState* state = optimizer->state(w);
  REQUIRE(state != nullptr);
  CHECK(state->tensors.at("exp_avg").dtype() == DType::F32);
  CHECK(state->tensors.at("exp_avg_sq").dtype() == DType::F32);
  CHECK(state->tensors.at("exp_avg").shape() == Shape{2, 3});
  // Float storage of w, g, m and v between steps: a few float roundings (~6e-8 each), amplified a
  // little by Adam's normalisation.
  check_close(w.value.to_vector(), expected, 1e-5);
}

TEST_CASE("frozen parameters are untouched bit for bit and never get state") {
  auto check_optimizer = [](std::unique_ptr<Optimizer> optimizer) {
    Context ctx;
    Rng rng(5);
    Parameter trained("weight", test::random_tensor(rng, {3, 2}, DType::F32));
    Parameter frozen("weight", test::random_tensor(rng, {4}, DType::F32));
    Parameter no_grad("bias", test::random_tensor(rng, {2}, DType::F32));  // trainable, never given a gradient
    frozen.set_trainable(false);
    Tensor frozen_before = frozen.value.clone();
    Tensor no_grad_before = no_grad.value.clone();
    Tensor trained_before = trained.value.clone();
    optimizer->add_group({{"a.weight", &trained}, {"b.weight", &frozen}, {"b.bias", &no_grad}}, 0.1);
    for (int step = 0; step < 3; ++step) {
      optimizer->zero_grad(ctx);
      trained.grad(ctx).fill(0.5);
      optimizer->step(ctx);
    }
    CHECK(test::bit_identical(frozen.value, frozen_before));
    CHECK(test::bit_identical(no_grad.value, no_grad_before));
    CHECK_FALSE(test::bit_identical(trained.value, trained_before));
    CHECK_FALSE(frozen.has_grad());  // zero_grad allocated nothing for it
    CHECK(optimizer->state(frozen) == nullptr);
    CHECK(optimizer->state(no_grad) == nullptr);
    CHECK(optimizer->state_count() == 1);
  };
  // Weight decay and momentum would move a frozen parameter even with a zero gradient.
  check_optimizer(make_sgd({.momentum = 0.9, .weight_decay = 0.1}));
  check_optimizer(make_adam({.weight_decay = 0.1, .decoupled = true}));
  check_optimizer(make_rmsprop({.weight_decay = 0.1, .momentum = 0.5}));
}

TEST_CASE("a parameter unfrozen later starts its own step count (bias correction from 1)") {
  Context ctx;
  const double lr = 0.1, b1 = 0.9, b2 = 0.999;
  auto optimizer = make_adam({});
  Parameter early("w", Tensor::from_vector({1}, std::vector<double>{1.0}));
  Parameter late("w", Tensor::from_vector({1}, std::vector<double>{1.0}));
  late.set_trainable(false);
  optimizer->add_group({{"early", &early}, {"late", &late}}, lr);
  for (int step = 0; step < 3; ++step) {
    if (step == 1) late.set_trainable(true);
    early.grad(ctx).fill(2.0);
    if (late.trainable()) late.grad(ctx).fill(2.0);
    optimizer->step(ctx);
  }
  CHECK(optimizer->state(early)->step == 3);
  CHECK(optimizer->state(late)->step == 2);
  // Constant gradient 2: three updates for early, two for late. Had late used the optimizer's global
  // count, its second update would be bias-corrected with step 3 and land elsewhere.
  auto adam = [&](std::vector<double> grads) {
    double w = 1, m = 0, v = 0;
    for (size_t t = 1; t <= grads.size(); ++t) {
      m = b1 * m + (1 - b1) * grads[t - 1];
      v = b2 * v + (1 - b2) * grads[t - 1] * grads[t - 1];
      w -= lr * (m / (1 - std::pow(b1, double(t)))) / (std::sqrt(v / (1 - std::pow(b2, double(t)))) + 1e-8);
    }
    return w;
  };
  CHECK(early.value.item() == doctest::Approx(adam({2, 2, 2})).epsilon(1e-14));
  CHECK(late.value.item() == doctest::Approx(adam({2, 2})).epsilon(1e-14));
}

TEST_CASE("two parameter groups step with their own learning rates") {
  Context ctx;
  auto optimizer = make_sgd({});
  Parameter head("weight", Tensor::from_vector({2}, std::vector<double>{1.0, -1.0}));
  Parameter body("weight", Tensor::from_vector({2}, std::vector<double>{1.0, -1.0}));
  optimizer->add_group({{"fc.weight", &head}}, 0.1);
  optimizer->add_group({{"layer4.0.conv1.weight", &body}}, 0.01);
  CHECK(optimizer->lr(0) == 0.1);
  CHECK(optimizer->lr(1) == 0.01);
  auto step_with = [&](double g) {
    optimizer->zero_grad(ctx);
    head.grad(ctx).fill(g);
    body.grad(ctx).fill(g);
    optimizer->step(ctx);
  };
  step_with(2.0);
  CHECK(head.value.to_vector() == std::vector<double>{1.0 - 0.1 * 2.0, -1.0 - 0.1 * 2.0});
  CHECK(body.value.to_vector() == std::vector<double>{1.0 - 0.01 * 2.0, -1.0 - 0.01 * 2.0});

  // A schedule factor scales every group; set_group_lr changes one base.
  optimizer->set_lr_factor(StepSchedule{1, 0.5}.factor(1));
  optimizer->set_group_lr(1, 0.04);
  CHECK(optimizer->lr(0) == doctest::Approx(0.05));
  CHECK(optimizer->lr(1) == doctest::Approx(0.02));
  double head_before = head.value.item(), body_before = body.value.item();
  step_with(1.0);
  CHECK(head.value.item() == doctest::Approx(head_before - 0.05).epsilon(1e-15));
  CHECK(body.value.item() == doctest::Approx(body_before - 0.02).epsilon(1e-15));

  optimizer->set_lr(0.3);
  CHECK(optimizer->base_lr(0) == 0.3);
  CHECK(optimizer->base_lr(1) == 0.3);
  CHECK_THROWS_WITH(optimizer->lr(2), "sgd: parameter group 2 does not exist (2 groups)");
  CHECK_THROWS_WITH(optimizer->add_group({{"again", &head}}, 0.1),
                    "sgd: parameter 'again' appears in more than one parameter group");
}

TEST_CASE("optimizer options are validated and update errors name the parameter") {
  CHECK_THROWS_WITH(make_sgd({.nesterov = true}),
                    "sgd: Nesterov momentum requires momentum > 0 and zero dampening, got momentum 0, dampening 0");
  CHECK_THROWS_WITH(make_adam({.beta1 = 1.0}), "adam: beta1 must be in [0,1), got 1");
  CHECK_THROWS_WITH(make_rmsprop({.momentum = -1}), "rmsprop: momentum must be >= 0, got -1");
  CHECK_THROWS_WITH(make_sgd({})->add_group({}, -0.1), "sgd: learning rate must be >= 0, got -0.1");

  Context ctx;
  auto optimizer = make_sgd({.momentum = 0.9});
  Parameter w("weight", Tensor::zeros({3}, DType::F64));
  optimizer->add_group({{"fc.weight", &w}}, 0.1);
  w.grad(ctx).fill(1.0);
  optimizer->step(ctx);
  convert_parameter_dtype(w, DType::F32);  // state stays F64: the next update must refuse it
  w.grad(ctx).fill(1.0);
  CHECK_THROWS_WITH(optimizer->step(ctx),
                    "sgd: parameter 'fc.weight': sgd_update: momentum_buffer: tensors differ in device or dtype: "
                    "F32[3] cpu vs F64[3] cpu");
}

TEST_CASE("a failed update does not count as a step") {
  Context ctx;
  Parameter p("w", Tensor::from_vector({2}, std::vector<float>{1.0f, -1.0f}));
  p.grad(ctx).fill(0.5);
  auto adam = make_adam({});
  adam->add_group({{"w", &p}}, 0.1);
  adam->step(ctx);
  REQUIRE(adam->state(p) != nullptr);
  CHECK(adam->state(p)->step == 1);
  convert_parameter_dtype(p, DType::F64);  // state stays F32: the next update must fail
  p.grad(ctx).fill(0.5);
  CHECK_THROWS_WITH(adam->step(ctx), doctest::Contains("parameter 'w'"));
  CHECK(adam->state(p)->step == 1);
}
