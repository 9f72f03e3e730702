#include <doctest/doctest.h>

#include <cmath>

#include "engine/context.h"
#include "kernels/dropout.h"
#include "layers/dropout.h"
#include "support/gradcheck.h"
#include "support/test_util.h"

using namespace tl;

namespace {
// Inputs never zero, so a zero in the output can only come from the mask.
Tensor nonzero_input(int64_t n, DType dtype = DType::F64, uint64_t seed = 5) {
  Rng rng(seed);
  return test::random_away_from_zero(rng, {n}, dtype);
}

Tensor run_forward(Context& ctx, const Tensor& x, double p, uint64_t seed) {
  Tensor y = Tensor::full(x.shape(), 99.0, x.dtype());  // garbage: every element must be written
  dropout_forward(ctx, x, p, seed, y);
  return y;
}

int64_t count_zeros(const Tensor& t) {
  int64_t zeros = 0;
  for (int64_t i = 0; i < t.numel(); ++i) zeros += t.item(i) == 0.0;
  return zeros;
}
}  // namespace

TEST_CASE("dropout keeps exactly the elements the hash keeps, scaled by 1/(1-p) in the tensor's type") {
  Context ctx;
  for (DType dtype : {DType::F32, DType::F64}) {
    Tensor x = nonzero_input(2 * 65536 + 5, dtype);  // crosses the CPU kernel's chunks: indices stay global
    const double p = 0.3;
    Tensor y = run_forward(ctx, x, p, 1234);
    int64_t wrong = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      double expected = 0.0;
      if (dropout_keeps(1234, static_cast<uint64_t>(i), p)) {
        expected = dtype == DType::F32
                       ? static_cast<double>(x.data<float>()[i] * static_cast<float>(1.0 / (1.0 - p)))
                       : x.item(i) * (1.0 / (1.0 - p));
      }
      wrong += y.item(i) != expected;  // exact: one multiply in the tensor's type
    }
    CHECK(wrong == 0);
  }
}

TEST_CASE("dropout: the same seed repeats the mask, another seed draws a different one") {
  Context ctx;
  const int64_t n = 100000;
  const double p = 0.5;
  Tensor x = nonzero_input(n);
  Tensor a = run_forward(ctx, x, p, 42);
  Tensor b = run_forward(ctx, x, p, 42);
  Tensor c = run_forward(ctx, x, p, 43);
  CHECK(test::bit_identical(a, b));
  // Independent masks disagree at a fraction 2p(1-p) = 0.5 of positions; std sqrt(0.25/n) = 0.0016,
  // so 5 sigma is 0.008. (Deterministic for these seeds; the bound says why it is not luck.)
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) differ += (a.item(i) == 0.0) != (c.item(i) == 0.0);
  double fraction = static_cast<double>(differ) / n;
  MESSAGE("seeds 42 vs 43 disagree on fraction ", fraction, " (expected 0.5)");
  CHECK(std::fabs(fraction - 2 * p * (1 - p)) <= 5 * std::sqrt(2 * p * (1 - p) * (1 - 2 * p * (1 - p)) / n));
}

TEST_CASE("dropout drops a fraction within 5 binomial standard deviations of p on 1e5 elements") {
  Context ctx;
  const int64_t n = 100000;
  Tensor x = nonzero_input(n, DType::F32);
  for (double p : {0.1, 0.3, 0.5, 0.9}) {
    for (uint64_t seed : {1ull, 777ull, 0xDEADBEEFull}) {
      double dropped = static_cast<double>(count_zeros(run_forward(ctx, x, p, seed))) / n;
      // Binomial(n, p)/n has std sqrt(p(1-p)/n) (<= 0.0016); a 5-sigma miss has probability ~6e-7.
      double bound = 5 * std::sqrt(p * (1 - p) / n);
      INFO("p ", p, " seed ", seed, " dropped ", dropped, " bound ", bound);
      CHECK(std::fabs(dropped - p) <= bound);
    }
  }
}

TEST_CASE("dropout backward applies the forward's mask and scale to dy") {
  Context ctx;
  const double p = 0.4;
  Tensor x = nonzero_input(5000);
  Tensor y = run_forward(ctx, x, p, 99);
  Tensor dy = nonzero_input(5000, DType::F64, 6);
  Tensor dx = Tensor::full(dy.shape(), 99.0, DType::F64);
  dropout_backward(ctx, dy, p, 99, dx);
  int64_t wrong = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    bool kept = y.item(i) != 0.0;
    wrong += dx.item(i) != (kept ? dy.item(i) * (1.0 / (1.0 - p)) : 0.0);
  }
  CHECK(wrong == 0);
}

TEST_CASE("dropout with p = 0 and in Eval mode is the identity") {
  Context ctx;
  Tensor x = nonzero_input(3001, DType::F32);
  CHECK(test::bit_identical(run_forward(ctx, x, 0.0, 8), x));

  Dropout none(0.0);
  CHECK(test::bit_identical(none.forward(ctx, x, Mode::Train), x));
  Dropout half(0.5);
  CHECK(test::bit_identical(half.forward(ctx, x, Mode::Eval), x));
  CHECK_THROWS_WITH(half.backward(ctx, x, true), doctest::Contains("no saved activations"));
}

TEST_CASE("Dropout layer draws a fresh seed per forward and keeps it for backward") {
  Context ctx;
  Dropout layer(0.5);
  Tensor x = nonzero_input(2000);
  Tensor first = layer.forward(ctx, x, Mode::Train);
  Tensor second = layer.forward(ctx, x, Mode::Train);
  CHECK_FALSE(test::bit_identical(first, second));

  ctx.rng().reseed(17);
  Tensor a = layer.forward(ctx, x, Mode::Train);
  ctx.rng().reseed(17);
  Tensor b = layer.forward(ctx, x, Mode::Train);
  CHECK(test::bit_identical(a, b));

  ctx.rng().next_u64();  // someone else draws between forward and backward: the saved seed is unaffected
  Tensor dx = layer.backward(ctx, Tensor::full(x.shape(), 1.0, DType::F64), true);
  int64_t mismatched = 0;
  for (int64_t i = 0; i < x.numel(); ++i) mismatched += (dx.item(i) == 0.0) != (b.item(i) == 0.0);
  CHECK(mismatched == 0);
  CHECK(count_zeros(dx) > 0);
}

TEST_CASE("Dropout gradients match finite differences in double (Train, reseeded per forward)") {
  Context ctx;
  Rng rng(31);
  Dropout layer(0.4);
  Tensor x = test::random_tensor(rng, {3, 2, 7, 5});
  auto report = test::check_layer_gradients(ctx, layer, x);
  MESSAGE("Dropout max rel error ", report.max_rel_error);
  INFO(report.worst);
  CHECK(report.max_rel_error <= 1e-6);  // linear in x for a fixed mask: only rounding remains
  CHECK(report.checked > 0);
}

TEST_CASE("dropout rejects p outside [0, 1) and mismatched shapes") {
  Context ctx;
  CHECK_THROWS_WITH(Dropout(1.0), "Dropout: dropout probability 1 must be in [0, 1)");
  CHECK_THROWS(Dropout(-0.1));
  Tensor x = Tensor::zeros({2, 3}, DType::F64);
  Tensor y = Tensor::zeros({3, 2}, DType::F64);
  CHECK_THROWS_WITH(dropout_forward(ctx, x, 0.5, 1, y), "dropout_forward: shape mismatch, [2,3] vs [3,2]");
  CHECK_THROWS_WITH(dropout_backward(ctx, x, 1.5, 1, x), doctest::Contains("dropout_backward: dropout probability"));
}
