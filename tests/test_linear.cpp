#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/context.h"
#include "kernels/linear.h"
#include "layers/linear.h"
#include "support/gradcheck.h"
#include "support/test_util.h"

using namespace tl;

namespace {

constexpr double kGarbage = 777.25;  // pre-fills outputs: an element a kernel forgets to write stays visible

// y[n,j] = b[j] + sum_i x[n,i] w[j,i], in double.
Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor* b) {
  int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  Tensor y = Tensor::zeros({N, out}, DType::F64);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < out; ++j) {
      double sum = b ? b->item(j) : 0.0;
      for (int64_t i = 0; i < in; ++i) sum += x.item(n * in + i) * w.item(j * in + i);
      y.data<double>()[n * out + j] = sum;
    }
  return y;
}

struct Case {
  int64_t batch, in, out;
};
// Few rows and many columns (computed transposed for the threads' sake) and the other way round.
const Case kCases[] = {{3, 7, 5}, {3, 9, 40}, {40, 6, 5}, {1, 33, 70}, {50, 20, 60}, {2, 64, 1}};

void check_kernels_against_naive(int threads, DType dtype, double tolerance) {
  Context ctx(ContextOptions{.threads = threads});
  Rng rng(17);
  for (const Case& c : kCases) {
    INFO("x [", c.batch, ",", c.in, "] w [", c.out, ",", c.in, "] threads ", threads, " ", dtype_name(dtype));
    Tensor x = test::random_tensor(rng, {c.batch, c.in}, dtype);
    Tensor w = test::random_tensor(rng, {c.out, c.in}, dtype);
    Tensor b = test::random_tensor(rng, {c.out}, dtype);
    for (bool with_bias : {true, false}) {
      Tensor expected = naive_linear(x, w, with_bias ? &b : nullptr);
      Tensor y = Tensor::full({c.batch, c.out}, kGarbage, dtype);
      linear_forward(ctx, x, w, with_bias ? &b : nullptr, y);
      CHECK(test::relative_l2(y, expected) <= tolerance);
    }

    Tensor dy = test::random_tensor(rng, {c.batch, c.out}, dtype);
    // dx = dy w
    Tensor dx_expected = Tensor::zeros({c.batch, c.in}, DType::F64);
    for (int64_t n = 0; n < c.batch; ++n)
      for (int64_t i = 0; i < c.in; ++i)
        for (int64_t j = 0; j < c.out; ++j)
          dx_expected.data<double>()[n * c.in + i] += dy.item(n * c.out + j) * w.item(j * c.in + i);
    Tensor dx = Tensor::full({c.batch, c.in}, kGarbage, dtype);
    linear_backward_data(ctx, dy, w, dx);
    CHECK(test::relative_l2(dx, dx_expected) <= tolerance);

    // dw += dy^T x and db += column sums of dy, from known starting values.
    Tensor dw_expected = test::random_tensor(rng, w.shape(), DType::F64);
    Tensor db_expected = test::random_tensor(rng, b.shape(), DType::F64);
    Tensor dw = dw_expected.to_dtype(dtype), db = db_expected.to_dtype(dtype);
    for (int64_t n = 0; n < c.batch; ++n)
      for (int64_t j = 0; j < c.out; ++j) {
        db_expected.data<double>()[j] += dy.item(n * c.out + j);
        for (int64_t i = 0; i < c.in; ++i)
          dw_expected.data<double>()[j * c.in + i] += dy.item(n * c.out + j) * x.item(n * c.in + i);
      }
    linear_backward_weight(ctx, x, dy, dw, &db);
    CHECK(test::relative_l2(dw, dw_expected) <= tolerance);
    CHECK(test::relative_l2(db, db_expected) <= tolerance);
  }
}

}  // namespace

TEST_CASE("linear kernels match direct loops") {
  // Double: the same sums in another order, so only rounding differs.
  SUBCASE("double, 2 threads") { check_kernels_against_naive(2, DType::F64, 1e-13); }
  SUBCASE("double, 1 thread") { check_kernels_against_naive(1, DType::F64, 1e-13); }
  // Float against a double reference: sums of at most 70 products at ~6e-8 rounding each.
  SUBCASE("float, 2 threads") { check_kernels_against_naive(2, DType::F32, 1e-5); }
  SUBCASE("float, 1 thread") { check_kernels_against_naive(1, DType::F32, 1e-5); }
}

TEST_CASE("Linear gradients match finite differences in double") {
  const Case cases[] = {{3, 7, 5}, {3, 40, 3}, {40, 6, 4}};
  Context ctx;
  Rng rng(23);
  for (const Case& c : cases)
    for (bool with_bias : {true, false}) {
      Linear fc(c.in, c.out, with_bias);
      test::to_double(fc);
      fc.reset_parameters(rng);
      Tensor x = test::random_tensor(rng, {c.batch, c.in});
      auto report = test::check_layer_gradients(ctx, fc, x);
      std::string label = str("Linear(", c.in, ", ", c.out, with_bias ? ", bias" : ", no bias", ") on [", c.batch,
                              ",", c.in, "]");
      MESSAGE(label, ": max rel error ", report.max_rel_error, " over ", report.checked, " elements");
      INFO(label, " worst ", report.worst);
      CHECK(report.max_rel_error <= 1e-6);
      CHECK(report.checked > 0);
    }
}

TEST_CASE("frozen Linear allocates no gradient and still gives the right dx") {
  Context ctx;
  Rng rng(29);
  Linear trained(9, 4), frozen(9, 4);
  trained.reset_parameters(rng);
  frozen.weight.value = trained.weight.value.clone();
  frozen.bias->value = trained.bias->value.clone();
  frozen.weight.set_trainable(false);
  Tensor x = test::random_tensor(rng, {3, 9}, DType::F32);
  Tensor dy = test::random_tensor(rng, {3, 4}, DType::F32);
  trained.forward(ctx, x, Mode::Train);
  Tensor dx_trained = trained.backward(ctx, dy, true);

  SUBCASE("weight frozen, bias trains") {
    frozen.forward(ctx, x, Mode::Train);
    Tensor dx = frozen.backward(ctx, dy, true);
    CHECK_FALSE(frozen.weight.has_grad());
    REQUIRE(frozen.bias->has_grad());
    CHECK(test::bit_identical(frozen.bias->grad(), trained.bias->grad()));
    CHECK(test::bit_identical(dx, dx_trained));
  }
  SUBCASE("everything frozen") {
    frozen.bias->set_trainable(false);
    frozen.forward(ctx, x, Mode::Train);
    Tensor dx = frozen.backward(ctx, dy, true);
    CHECK_FALSE(frozen.weight.has_grad());
    CHECK_FALSE(frozen.bias->has_grad());
    CHECK(test::bit_identical(dx, dx_trained));
  }
}

TEST_CASE("Linear parameter gradients accumulate across backward calls; dx is overwritten") {
  Context ctx;
  Rng rng(37);
  Linear fc(11, 6);
  test::to_double(fc);
  fc.reset_parameters(rng);
  Tensor x = test::random_tensor(rng, {3, 11});
  Tensor dy = test::random_tensor(rng, {3, 6});
  fc.forward(ctx, x, Mode::Train);
  Tensor dx1 = fc.backward(ctx, dy, true);
  Tensor w1 = fc.weight.grad().clone(), b1 = fc.bias->grad().clone();
  fc.forward(ctx, x, Mode::Train);
  Tensor dx2 = fc.backward(ctx, dy, true);
  CHECK(test::bit_identical(dx1, dx2));
  for (auto [once, twice] : {std::pair{w1, fc.weight.grad()}, std::pair{b1, fc.bias->grad()}}) {
    Tensor doubled = once.clone();
    for (int64_t i = 0; i < doubled.numel(); ++i) doubled.data<double>()[i] *= 2;
    CHECK(test::relative_l2(twice, doubled) <= 1e-14);  // only the order of two additions differs
  }
}

TEST_CASE("Linear names both shapes on a mismatch") {
  Context ctx;
  Linear fc(12, 3);
  CHECK_THROWS_WITH(fc.forward(ctx, Tensor::zeros({2, 10}), Mode::Eval),
                    "layer <unnamed> (Linear): expected input [N,12] for weight [3,12], got F32[2,10] cpu");
  CHECK_THROWS_WITH(fc.forward(ctx, Tensor::zeros({2, 3, 2, 2}), Mode::Eval),
                    "layer <unnamed> (Linear): expected input [N,12] for weight [3,12], got F32[2,3,2,2] cpu "
                    "(flatten it first)");
  Tensor w = Tensor::zeros({3, 12});
  Tensor y = Tensor::zeros({2, 4});
  CHECK_THROWS_WITH(linear_forward(ctx, Tensor::zeros({2, 12}), w, nullptr, y),
                    "linear_forward: output has shape [2,4], expected [2,3] for input [2,12] and weight [3,12]");
  CHECK_THROWS_WITH(linear_forward(ctx, Tensor::zeros({2, 10}), w, nullptr, y),
                    "linear_forward: input [2,10] has 10 features but weight [3,12] expects 12");
  Tensor bad_bias = Tensor::zeros({4});
  Tensor y_ok = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH(linear_forward(ctx, Tensor::zeros({2, 12}), w, &bad_bias, y_ok),
                    "linear_forward: bias [4] does not match weight [3,12] (expected [3])");
}

TEST_CASE("Linear parameters follow PyTorch's names, shapes and default bounds") {
  Linear fc(50, 20);
  CHECK(fc.kind() == "Linear");
  auto params = fc.local_parameters();
  REQUIRE(params.size() == 2);
  CHECK(params[0]->local_name() == "weight");
  CHECK(params[0]->value.shape() == Shape{20, 50});
  CHECK(params[1]->local_name() == "bias");
  CHECK(params[1]->value.shape() == Shape{20});
  CHECK(Linear(5, 2, false).local_parameters().size() == 1);
  Rng rng(9);
  fc.reset_parameters(rng);
  double bound = 1.0 / std::sqrt(50.0), largest = 0;
  for (Parameter* p : params)
    for (double v : p->value.to_vector()) largest = std::max(largest, std::fabs(v));
  CHECK(largest <= bound);
  CHECK(largest > 0.9 * bound);  // 1020 draws: not all of them stay in the inner 90%
}
