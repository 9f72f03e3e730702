#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/context.h"
#include "kernels/batchnorm.h"
#include "layers/batchnorm2d.h"
#include "support/gradcheck.h"
#include "support/test_util.h"

using namespace tl;

namespace {

// Pre-fill for outputs: finite, because NaN slips through max_abs_diff and the gradient comparison.
constexpr double kGarbage = 1e30;

// Per-channel mean and variances of an [N,C,H,W] tensor, computed here independently of the kernel
// (straight loops over item(), two passes).
struct ChannelStats {
  std::vector<double> mean, biased_var, unbiased_var;
};

ChannelStats channel_stats(const Tensor& x) {
  int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  ChannelStats s;
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < hw; ++i) sum += x.item((b * c + ch) * hw + i);
    double mean = sum / double(n * hw);
    double sq = 0;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < hw; ++i) sq += std::pow(x.item((b * c + ch) * hw + i) - mean, 2);
    s.mean.push_back(mean);
    s.biased_var.push_back(sq / double(n * hw));
    s.unbiased_var.push_back(sq / double(n * hw - 1));
  }
  return s;
}

// y = (x - mean) / sqrt(var + eps) * gamma + beta with the given per-channel statistics.
Tensor normalize_reference(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& var,
                           const Tensor& gamma, const Tensor& beta, double eps) {
  Tensor y = Tensor::empty(x.shape(), DType::F64);
  int64_t c = x.size(1), hw = x.size(2) * x.size(3);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t ch = (i / hw) % c;
    y.data<double>()[i] = (x.item(i) - mean[ch]) / std::sqrt(var[ch] + eps) * gamma.item(ch) + beta.item(ch);
  }
  return y;
}

std::vector<double> values(const Tensor& t) { return t.to_vector(); }

// A double-precision layer with non-trivial scale, shift and running statistics.
void randomize(BatchNorm2d& bn, Rng& rng) {
  test::to_double(bn);
  int64_t c = bn.channels();
  bn.weight.value = test::random_tensor(rng, {c}, DType::F64, 0.5, 1.5);
  bn.bias.value = test::random_tensor(rng, {c}, DType::F64, -0.5, 0.5);
  bn.running_mean.value = test::random_tensor(rng, {c}, DType::F64, -0.3, 0.3);
  bn.running_var.value = test::random_tensor(rng, {c}, DType::F64, 0.5, 2.0);
}

}  // namespace

TEST_CASE("batchnorm2d has torchvision's names, shapes and initial values") {
  BatchNorm2d bn(6);
  CHECK(bn.kind() == "BatchNorm2d");
  REQUIRE(bn.local_parameters().size() == 2);
  CHECK(bn.local_parameters()[0]->local_name() == "weight");
  CHECK(bn.local_parameters()[1]->local_name() == "bias");
  REQUIRE(bn.local_buffers().size() == 3);
  CHECK(bn.local_buffers()[0]->local_name == "running_mean");
  CHECK(bn.local_buffers()[1]->local_name == "running_var");
  CHECK(bn.local_buffers()[2]->local_name == "num_batches_tracked");
  CHECK(bn.weight.value.to_vector() == std::vector<double>(6, 1.0));
  CHECK(bn.bias.value.to_vector() == std::vector<double>(6, 0.0));
  CHECK(bn.running_mean.value.to_vector() == std::vector<double>(6, 0.0));
  CHECK(bn.running_var.value.to_vector() == std::vector<double>(6, 1.0));
  CHECK(bn.num_batches_tracked.value.dtype() == DType::I64);
  CHECK(bn.num_batches_tracked.value.shape().empty());
  CHECK(bn.num_batches_tracked.value.numel() == 1);
  CHECK(bn.num_batches_tracked.value.item() == 0);
  CHECK(bn.eps() == 1e-5);
  CHECK(bn.momentum() == 0.1);
}

TEST_CASE("batchnorm train kernel normalises with batch statistics and writes every output") {
  Context ctx;
  Rng rng(3);
  Tensor x = test::random_tensor(rng, {3, 4, 7, 5}, DType::F64, -2, 3);
  Tensor gamma = test::random_tensor(rng, {4}, DType::F64, 0.5, 1.5);
  Tensor beta = test::random_tensor(rng, {4}, DType::F32, -1, 1);  // per-channel dtypes may differ from x
  Tensor running_mean = Tensor::zeros({4}, DType::F64), running_var = Tensor::full({4}, 1.0, DType::F32);
  Tensor y = Tensor::full(x.shape(), kGarbage, DType::F64);  // an unwritten element keeps 1e30
  Tensor save_mean = Tensor::full({4}, kGarbage, DType::F64), save_invstd = Tensor::full({4}, kGarbage, DType::F64);
  batchnorm_forward_train(ctx, x, gamma, beta, running_mean, running_var, 0.1, 1e-5, y, save_mean, save_invstd);

  ChannelStats s = channel_stats(x);
  // Both sides sum 105 doubles in different orders: rounding differences ~1e-15.
  CHECK(test::max_abs_diff(y, normalize_reference(x, s.mean, s.biased_var, gamma, beta, 1e-5)) < 1e-12);
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(save_mean.item(c) == doctest::Approx(s.mean[c]).epsilon(1e-12));
    CHECK(save_invstd.item(c) == doctest::Approx(1 / std::sqrt(s.biased_var[c] + 1e-5)).epsilon(1e-12));
  }
}

TEST_CASE("batchnorm running statistics after one and two training forwards follow the closed form") {
  Context ctx;
  Rng rng(5);
  const double momentum = 0.25;  // not the default, so a hard-coded 0.1 would fail
  BatchNorm2d bn(3, 1e-5, momentum);
  test::to_double(bn);
  Tensor x1 = test::random_tensor(rng, {3, 3, 7, 5}, DType::F64, -1, 2);
  Tensor x2 = test::random_tensor(rng, {3, 3, 7, 5}, DType::F64, 0, 4);
  Tensor y1 = bn.forward(ctx, x1, Mode::Train);
  CHECK(bn.num_batches_tracked.value.item() == 1);
  ChannelStats s1 = channel_stats(x1), s2 = channel_stats(x2);
  for (int64_t c = 0; c < 3; ++c) {
    CHECK(bn.running_mean.value.item(c) == doctest::Approx(momentum * s1.mean[c]).epsilon(1e-12));
    CHECK(bn.running_var.value.item(c) ==
          doctest::Approx((1 - momentum) * 1.0 + momentum * s1.unbiased_var[c]).epsilon(1e-12));
  }
  CHECK(test::max_abs_diff(y1, normalize_reference(x1, s1.mean, s1.biased_var, bn.weight.value, bn.bias.value,
                                                   1e-5)) < 1e-12);

  bn.forward(ctx, x2, Mode::Train);
  CHECK(bn.num_batches_tracked.value.item() == 2);
  CHECK(bn.num_batches_tracked.value.dtype() == DType::I64);
  for (int64_t c = 0; c < 3; ++c) {
    double mean = (1 - momentum) * (momentum * s1.mean[c]) + momentum * s2.mean[c];
    double var = (1 - momentum) * ((1 - momentum) + momentum * s1.unbiased_var[c]) + momentum * s2.unbiased_var[c];
    CHECK(bn.running_mean.value.item(c) == doctest::Approx(mean).epsilon(1e-12));
    CHECK(bn.running_var.value.item(c) == doctest::Approx(var).epsilon(1e-12));
  }
}

TEST_CASE("batchnorm eval uses the running statistics and changes nothing") {
  Context ctx;
  Rng rng(8);
  BatchNorm2d bn(4);
  randomize(bn, rng);
  Tensor x = test::random_tensor(rng, {3, 4, 7, 5}, DType::F64, -2, 2);
  Tensor mean_before = bn.running_mean.value.clone(), var_before = bn.running_var.value.clone();
  Tensor y = bn.forward(ctx, x, Mode::Eval);
  Tensor expected = normalize_reference(x, values(bn.running_mean.value), values(bn.running_var.value),
                                        bn.weight.value, bn.bias.value, 1e-5);
  CHECK(test::max_abs_diff(y, expected) < 1e-13);  // one rounding per operation, values ~1
  CHECK(test::bit_identical(bn.running_mean.value, mean_before));
  CHECK(test::bit_identical(bn.running_var.value, var_before));
  CHECK(bn.num_batches_tracked.value.item() == 0);
}

TEST_CASE("batchnorm train-mode gradients (batch statistics) match finite differences in double") {
  Context ctx;
  Rng rng(11);
  BatchNorm2d bn(5);
  randomize(bn, rng);
  Tensor x = test::random_tensor(rng, {3, 5, 7, 5}, DType::F64, -1, 2);
  auto report = test::check_layer_gradients(ctx, bn, x);  // input, weight and bias
  MESSAGE("train-mode max relative error ", report.max_rel_error, " at ", report.worst);
  CHECK(report.max_rel_error <= 1e-6);
  CHECK(report.checked > 64 + 5 + 5);  // ~64 sampled inputs plus every weight and bias
}

TEST_CASE("batchnorm eval-mode backward kernel matches finite differences in double") {
  Context ctx;
  Rng rng(13);
  const double eps = 1e-5;
  Tensor x = test::random_tensor(rng, {3, 4, 7, 5}, DType::F64, -1, 2);
  Tensor gamma = test::random_tensor(rng, {4}, DType::F64, 0.5, 1.5);
  Tensor beta = test::random_tensor(rng, {4}, DType::F64, -0.5, 0.5);
  Tensor mean = test::random_tensor(rng, {4}, DType::F64, -0.3, 0.3);
  Tensor var = test::random_tensor(rng, {4}, DType::F64, 0.5, 2.0);
  Tensor r = test::random_tensor(rng, x.shape(), DType::F64);
  auto loss = [&](const Tensor& input, const Tensor& g, const Tensor& b) {
    Tensor y = Tensor::empty(input.shape(), DType::F64);
    batchnorm_forward_eval(ctx, input, g, b, mean, var, eps, y);
    double l = 0;
    for (int64_t i = 0; i < y.numel(); ++i) l += y.item(i) * r.item(i);
    return l;
  };
  Tensor dx = Tensor::full(x.shape(), kGarbage, DType::F64);
  Tensor dgamma = Tensor::zeros({4}, DType::F64), dbeta = Tensor::zeros({4}, DType::F64);
  batchnorm_backward_eval(ctx, x, r, gamma, mean, var, eps, &dx, &dgamma, &dbeta);

  test::GradCheckOptions all;
  all.max_checks_per_tensor = x.numel();  // every element: dx is cheap here
  auto rx = test::check_function_gradient([&](const Tensor& t) { return loss(t, gamma, beta); }, x, dx, "x", all);
  auto rg = test::check_function_gradient([&](const Tensor& t) { return loss(x, t, beta); }, gamma, dgamma, "gamma");
  auto rb = test::check_function_gradient([&](const Tensor& t) { return loss(x, gamma, t); }, beta, dbeta, "beta");
  MESSAGE("eval-mode max relative errors: dx ", rx.max_rel_error, ", dgamma ", rg.max_rel_error, ", dbeta ",
          rb.max_rel_error);
  CHECK(rx.max_rel_error <= 1e-6);
  CHECK(rg.max_rel_error <= 1e-6);
  CHECK(rb.max_rel_error <= 1e-6);
  CHECK(rx.checked == x.numel());
}

TEST_CASE("frozen batchnorm: train forward equals eval bit for bit and backward uses the eval formula") {
  Context ctx;
  Rng rng(17);
  BatchNorm2d bn(4);
  randomize(bn, rng);
  CHECK_FALSE(bn.frozen());
  bn.weight.set_trainable(false);
  CHECK_FALSE(bn.frozen());  // a trainable bias alone keeps batch statistics
  bn.bias.set_trainable(false);
  CHECK(bn.frozen());

  Tensor x = test::random_tensor(rng, {3, 4, 7, 5}, DType::F64, -1, 2);
  Tensor mean_before = bn.running_mean.value.clone(), var_before = bn.running_var.value.clone();
  Tensor y_eval = bn.forward(ctx, x, Mode::Eval);
  Tensor y_train = bn.forward(ctx, x, Mode::Train);
  CHECK(test::bit_identical(y_train, y_eval));
  CHECK(test::bit_identical(bn.running_mean.value, mean_before));
  CHECK(test::bit_identical(bn.running_var.value, var_before));
  CHECK(bn.num_batches_tracked.value.item() == 0);

  // dx = dy * gamma / sqrt(running_var + eps), formula written out here.
  Tensor dy = test::random_tensor(rng, x.shape(), DType::F64);
  Tensor dx = bn.backward(ctx, dy, true);
  Tensor expected = Tensor::empty(x.shape(), DType::F64);
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t c = (i / 35) % 4;
    expected.data<double>()[i] =
        dy.item(i) * bn.weight.value.item(c) / std::sqrt(bn.running_var.value.item(c) + bn.eps());
  }
  CHECK(test::max_abs_diff(dx, expected) < 1e-14);
  CHECK_FALSE(bn.weight.has_grad());
  CHECK_FALSE(bn.bias.has_grad());

  auto report = test::check_layer_gradients(ctx, bn, x);  // Train mode: only dx, parameters are frozen
  MESSAGE("frozen train-mode max relative error ", report.max_rel_error, " at ", report.worst);
  CHECK(report.max_rel_error <= 1e-6);
  CHECK(report.checked > 60);  // ~64 sampled inputs, no parameters
  CHECK_FALSE(bn.weight.has_grad());
  CHECK_FALSE(bn.bias.has_grad());
  CHECK(test::bit_identical(bn.running_mean.value, mean_before));
  CHECK(test::bit_identical(bn.running_var.value, var_before));
  CHECK(bn.num_batches_tracked.value.item() == 0);
}

TEST_CASE("batchnorm with only the weight frozen still trains on batch statistics") {
  Context ctx;
  Rng rng(19);
  BatchNorm2d bn(3);
  randomize(bn, rng);
  bn.weight.set_trainable(false);
  Tensor x = test::random_tensor(rng, {3, 3, 7, 5}, DType::F64, -1, 2);
  Tensor mean_before = bn.running_mean.value.clone();
  bn.forward(ctx, x, Mode::Train);
  CHECK_FALSE(test::bit_identical(bn.running_mean.value, mean_before));
  CHECK(bn.num_batches_tracked.value.item() == 1);
  bn.backward(ctx, test::random_tensor(rng, x.shape(), DType::F64), false);
  CHECK_FALSE(bn.weight.has_grad());
  CHECK(bn.bias.has_grad());
}

TEST_CASE("batchnorm is stable for channels with mean 1e4 and variance 1e-4 in float") {
  Context ctx;
  Rng rng(23);
  BatchNorm2d bn(3);  // F32 parameters, eps 1e-5
  Tensor x = Tensor::empty({4, 3, 8, 8}, DType::F32);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(1e4 + 1e-2 * rng.normal());
  Tensor y = bn.forward(ctx, x, Mode::Train);
  REQUIRE(y.dtype() == DType::F32);

  // The exact result has mean 0 and variance v / (v + eps) (v: the batch variance of the float inputs,
  // ~1e-4, so ~0.91). y is rounded to float, ~6e-8 relative per element, which moves the sample mean
  // and variance of y by ~1e-7: 1e-5 leaves a wide margin. One-pass E[x^2] - E[x]^2, even in double,
  // subtracts two numbers ~1e8 that each carry rounding of ~1e-8 per addition, i.e. ~1e-4 of v each
  // time: measured ~4e-3 relative below, far above 1e-5 (and in float the result is meaningless).
  const double tolerance = 1e-5;
  ChannelStats sx = channel_stats(x), sy = channel_stats(y);
  for (int64_t c = 0; c < 3; ++c) {
    INFO("channel ", c, ": input variance ", sx.biased_var[c], ", output mean ", sy.mean[c], ", variance ",
         sy.biased_var[c]);
    CHECK(std::fabs(sy.mean[c]) < tolerance);
    CHECK(std::fabs(sy.biased_var[c] - sx.biased_var[c] / (sx.biased_var[c] + 1e-5)) < tolerance);
    CHECK(sx.biased_var[c] == doctest::Approx(1e-4).epsilon(0.2));  // the data is what it claims
  }
  MESSAGE("stable-case output: mean ", sy.mean[0], ", variance error ",
          sy.biased_var[0] - sx.biased_var[0] / (sx.biased_var[0] + 1e-5));

  // This data defeats the one-pass formula, so the test above can fail.
  double worst_one_pass = 0;
  for (int64_t c = 0; c < 3; ++c) {
    double sum = 0, sum_sq = 0;
    int64_t count = 4 * 64;
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t i = 0; i < 64; ++i) {
        double v = x.item((b * 3 + c) * 64 + i);
        sum += v;
        sum_sq += v * v;
      }
    double one_pass = sum_sq / count - (sum / count) * (sum / count);
    worst_one_pass = std::max(worst_one_pass, std::fabs(one_pass - sx.biased_var[c]) / sx.biased_var[c]);
  }
  MESSAGE("one-pass double variance relative error on this data: ", worst_one_pass);
  CHECK(worst_one_pass > 10 * tolerance);
}

TEST_CASE("batchnorm parameter gradients accumulate across two backward calls") {
  Context ctx;
  Rng rng(29);
  BatchNorm2d bn(4);
  randomize(bn, rng);
  Tensor x = test::random_tensor(rng, {3, 4, 7, 5}, DType::F64, -1, 2);
  Tensor dy = test::random_tensor(rng, x.shape(), DType::F64);
  bn.forward(ctx, x, Mode::Train);
  bn.backward(ctx, dy, false);
  Tensor dgamma_once = bn.weight.grad().clone(), dbeta_once = bn.bias.grad().clone();
  CHECK(test::max_abs_diff(dgamma_once, Tensor::zeros({4}, DType::F64)) > 0.1);
  bn.forward(ctx, x, Mode::Train);
  bn.backward(ctx, dy, false);
  for (int64_t c = 0; c < 4; ++c) {
    CHECK(bn.weight.grad().item(c) == doctest::Approx(2 * dgamma_once.item(c)).epsilon(1e-12));
    CHECK(bn.bias.grad().item(c) == doctest::Approx(2 * dbeta_once.item(c)).epsilon(1e-12));
  }

  // The eval kernel accumulates too.
  Tensor dgamma = Tensor::full({4}, 1.0, DType::F64), dbeta = Tensor::full({4}, -2.0, DType::F64);
  Tensor zero = Tensor::zeros({4}, DType::F64), one = Tensor::full({4}, 1.0, DType::F64);
  batchnorm_backward_eval(ctx, x, dy, one, zero, one, 0.0, nullptr, &dgamma, &dbeta);
  for (int64_t c = 0; c < 4; ++c) {
    double sum_dy = 0, sum_dy_x = 0;
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t i = 0; i < 35; ++i) {
        int64_t k = (b * 4 + c) * 35 + i;
        sum_dy += dy.item(k);
        sum_dy_x += dy.item(k) * x.item(k);
      }
    CHECK(dgamma.item(c) == doctest::Approx(1.0 + sum_dy_x).epsilon(1e-12));
    CHECK(dbeta.item(c) == doctest::Approx(-2.0 + sum_dy).epsilon(1e-12));
  }
}

TEST_CASE("batchnorm reports shape errors with both shapes") {
  Context ctx;
  BatchNorm2d bn(4);
  CHECK_THROWS_WITH(bn.forward(ctx, Tensor::zeros({2, 3, 5, 5}), Mode::Eval),
                    "layer <unnamed> (BatchNorm2d): expected [N,4,H,W], got F32[2,3,5,5] cpu");
  Tensor x = Tensor::zeros({2, 4, 5, 5}), y = Tensor::zeros({2, 4, 5, 5}), three = Tensor::zeros({3});
  Tensor four = Tensor::zeros({4});
  CHECK_THROWS_WITH(batchnorm_forward_eval(ctx, x, three, four, four, four, 1e-5, y),
                    "batchnorm_forward_eval: gamma has shape [3], expected [4] (the channels of x [2,4,5,5])");
  Tensor one_value = Tensor::zeros({1, 4, 1, 1}), y1 = Tensor::zeros({1, 4, 1, 1});
  CHECK_THROWS_WITH(
      batchnorm_forward_train(ctx, one_value, four, four, four, four, 0.1, 1e-5, y1, four, four),
      "batchnorm_forward_train: expected more than 1 value per channel when training, got F32[1,4,1,1] cpu");
}
