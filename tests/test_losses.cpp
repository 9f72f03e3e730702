#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/context.h"
#include "engine/loss.h"
#include "kernels/bce_with_logits.h"
#include "kernels/softmax_cross_entropy.h"
#include "support/gradcheck.h"
#include "support/test_util.h"

using namespace tl;
using test::labels_of;
using test::random_labels;

namespace {


// Textbook cross-entropy, written independently of the kernel: unshifted softmax (fine for the
// small logits used here) and -sum_c target_c * log(p_c), averaged over rows.
double reference_cross_entropy(const Tensor& logits, const Tensor& labels, double smoothing) {
  int64_t n = logits.size(0), c = logits.size(1);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double denominator = 0;
    for (int64_t j = 0; j < c; ++j) denominator += std::exp(logits.item(i * c + j));
    for (int64_t j = 0; j < c; ++j) {
      double target = (j == int64_t(labels.item(i)) ? 1 - smoothing : 0) + smoothing / double(c);
      total -= target * std::log(std::exp(logits.item(i * c + j)) / denominator);
    }
  }
  return total / double(n);
}

double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }

}  // namespace

TEST_CASE("softmax cross-entropy gradient matches finite differences, with and without label smoothing") {
  Context ctx;
  Rng rng(21);
  for (double smoothing : {0.0, 0.1, 0.35}) {
    CAPTURE(smoothing);
    Tensor logits = test::random_tensor(rng, {3, 7}, DType::F64, -3, 3);
    Tensor labels = random_labels(rng, 3, 7);
    Tensor dlogits = Tensor::full({3, 7}, 99.0, DType::F64);  // garbage: every element must be overwritten
    softmax_cross_entropy(ctx, logits, labels, smoothing, &dlogits);
    auto loss_at = [&](const Tensor& z) { return softmax_cross_entropy(ctx, z, labels, smoothing, nullptr); };
    auto report = test::check_function_gradient(loss_at, logits, dlogits, "logits");
    INFO(report.worst);
    MESSAGE("softmax CE smoothing ", smoothing, ": max rel error ", report.max_rel_error);
    CHECK(report.checked == 21);
    CHECK(report.max_rel_error <= 1e-6);
  }
}

TEST_CASE("softmax cross-entropy value matches the textbook formula in F64 and F32") {
  Context ctx;
  Rng rng(22);
  for (DType dtype : {DType::F64, DType::F32}) {
    for (double smoothing : {0.0, 0.2}) {
      Tensor logits = test::random_tensor(rng, {5, 4}, dtype, -4, 4);
      Tensor labels = random_labels(rng, 5, 4);
      double loss = softmax_cross_entropy(ctx, logits, labels, smoothing, nullptr);
      // Both sides work in double on the same (float-representable) inputs: only rounding differs.
      CHECK(loss == doctest::Approx(reference_cross_entropy(logits, labels, smoothing)).epsilon(1e-12));
    }
  }
  // Equal logits: the loss is log(C) whatever the label and smoothing.
  Tensor flat = Tensor::zeros({2, 4}, DType::F64);
  CHECK(softmax_cross_entropy(ctx, flat, labels_of({3, 0}), 0.3, nullptr) == doctest::Approx(std::log(4.0)));
}

TEST_CASE("softmax cross-entropy at logits of +-1e4 is finite and equals the analytic limit") {
  Context ctx;
  const double big = 1e4, s = 0.3, log2 = std::log(2.0);
  // Row 0: one winner (class 0), label 1.  Row 1: two tied winners (classes 1, 2), label 2.
  std::vector<double> z = {big, -big, 0, -big, big, big};
  Tensor labels = labels_of({1, 2});
  for (DType dtype : {DType::F64, DType::F32}) {
    Tensor logits = Tensor::from_vector({2, 3}, z).to_dtype(dtype);
    Tensor dlogits;
    double loss = softmax_cross_entropy(ctx, logits, labels, s, &dlogits);
    // In the limit lse = max + log(#ties), so loss_i = sum_c target_c * (lse_i - z_ic):
    //   row 0: lse - z = [0, 2e4, 1e4], targets [s/3, 1-s+s/3, s/3]
    //   row 1: lse - z = [2e4 + log2, log2, log2], targets [s/3, s/3, 1-s+s/3]
    double row0 = (1 - s + s / 3) * 2 * big + (s / 3) * big;
    double row1 = log2 + (s / 3) * 2 * big;
    REQUIRE(std::isfinite(loss));
    CHECK(loss == doctest::Approx((row0 + row1) / 2).epsilon(1e-14));
    // softmax: row 0 [1, 0, 0]; row 1 [0, 1/2, 1/2]; gradient (softmax - target) / N.
    std::vector<double> expected = {(1 - s / 3) / 2, (0 - (1 - s + s / 3)) / 2, (0 - s / 3) / 2,
                                    (0 - s / 3) / 2, (0.5 - s / 3) / 2,        (0.5 - (1 - s + s / 3)) / 2};
    for (int64_t i = 0; i < 6; ++i) {
      CAPTURE(i);
      REQUIRE(std::isfinite(dlogits.item(i)));
      // F32 stores the gradient rounded once to float.
      CHECK(dlogits.item(i) == doctest::Approx(expected[size_t(i)]).epsilon(dtype == DType::F32 ? 1e-7 : 1e-15));
    }
  }
}

TEST_CASE("softmax is stable, sums to one per row and matches the textbook formula") {
  Context ctx;
  Rng rng(23);
  Tensor logits = test::random_tensor(rng, {3, 5}, DType::F64, -3, 3);
  Tensor p = Tensor::full({3, 5}, 99.0, DType::F64);
  softmax(ctx, logits, p);
  for (int64_t i = 0; i < 3; ++i) {
    double denominator = 0, row_sum = 0;
    for (int64_t j = 0; j < 5; ++j) denominator += std::exp(logits.item(i * 5 + j));
    for (int64_t j = 0; j < 5; ++j) {
      CHECK(p.item(i * 5 + j) == doctest::Approx(std::exp(logits.item(i * 5 + j)) / denominator).epsilon(1e-14));
      row_sum += p.item(i * 5 + j);
    }
    CHECK(row_sum == doctest::Approx(1.0).epsilon(1e-15));
  }
  Tensor huge = Tensor::from_vector({1, 3}, std::vector<double>{1e4, 1e4, -1e4});
  Tensor q;
  softmax(ctx, huge, q);
  CHECK(q.to_vector() == std::vector<double>{0.5, 0.5, 0.0});
}

TEST_CASE("softmax cross-entropy names a bad label, its index, and bad shapes") {
  Context ctx;
  Tensor logits = Tensor::zeros({3, 4}, DType::F64);
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits, labels_of({0, 4, 1}), 0, nullptr),
                    "softmax_cross_entropy: label 4 at index 1 is outside [0, 4) for logits [3,4]");
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits, labels_of({0, 1, -1}), 0, nullptr),
                    "softmax_cross_entropy: label -1 at index 2 is outside [0, 4) for logits [3,4]");
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits, labels_of({0, 1}), 0, nullptr),
                    "softmax_cross_entropy: labels must be I64 [3] to match logits [3,4], got I64[2] cpu");
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, Tensor::zeros({12}, DType::F64), labels_of({0}), 0, nullptr),
                    "softmax_cross_entropy: logits must be [N,C] with N,C >= 1, got [12]");
  Tensor wrong = Tensor::zeros({4, 3}, DType::F64);
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits, labels_of({0, 1, 2}), 0, &wrong),
                    "softmax_cross_entropy: shape mismatch, [3,4] vs [4,3]");
}

TEST_CASE("cross_entropy_loss returns the kernel's loss and gradient") {
  Context ctx;
  Rng rng(24);
  Tensor logits = test::random_tensor(rng, {4, 3}, DType::F32, -2, 2);
  Tensor labels = random_labels(rng, 4, 3);
  Tensor dlogits;
  double loss = softmax_cross_entropy(ctx, logits, labels, 0.1, &dlogits);
  LossResult result = cross_entropy_loss(ctx, logits, labels, 0.1);
  CHECK(result.loss == loss);
  CHECK(result.dlogits.dtype() == DType::F32);
  CHECK(test::bit_identical(result.dlogits, dlogits));
}

TEST_CASE("bce with logits gradient matches finite differences for [N] and [N,1]") {
  Context ctx;
  Rng rng(31);
  for (Shape shape : {Shape{7}, Shape{5, 1}}) {
    Tensor logits = test::random_tensor(rng, shape, DType::F64, -4, 4);
    Tensor targets = test::random_tensor(rng, shape, DType::F64, 0, 1);
    Tensor dlogits = Tensor::full(shape, 99.0, DType::F64);  // garbage: every element must be overwritten
    bce_with_logits(ctx, logits, targets, &dlogits);
    auto loss_at = [&](const Tensor& z) { return bce_with_logits(ctx, z, targets, nullptr); };
    auto report = test::check_function_gradient(loss_at, logits, dlogits, "logits");
    INFO(report.worst);
    MESSAGE("bce shape ", shape_str(shape), ": max rel error ", report.max_rel_error);
    CHECK(report.checked == logits.numel());
    CHECK(report.max_rel_error <= 1e-6);
  }
}

TEST_CASE("bce with logits value matches the textbook formula") {
  Context ctx;
  Rng rng(32);
  Tensor logits = test::random_tensor(rng, {6}, DType::F64, -5, 5);
  Tensor targets = test::random_tensor(rng, {6}, DType::F64, 0, 1);
  double expected = 0;
  for (int64_t i = 0; i < 6; ++i) {
    double p = sigmoid(logits.item(i)), t = targets.item(i);
    expected -= t * std::log(p) + (1 - t) * std::log(1 - p);
  }
  CHECK(bce_with_logits(ctx, logits, targets, nullptr) == doctest::Approx(expected / 6).epsilon(1e-12));
  LossResult result = bce_with_logits_loss(ctx, logits.to_dtype(DType::F32), targets.to_dtype(DType::F32));
  CHECK(result.loss == doctest::Approx(expected / 6).epsilon(1e-6));  // inputs rounded to float
  CHECK(result.dlogits.shape() == Shape{6});
}

TEST_CASE("bce with logits at |z| = 1e4 is finite and equals the analytic limit") {
  Context ctx;
  for (DType dtype : {DType::F64, DType::F32}) {
    Tensor logits = Tensor::from_vector({4, 1}, std::vector<double>{1e4, -1e4, 1e4, -1e4}).to_dtype(dtype);
    Tensor targets = Tensor::from_vector({4, 1}, std::vector<double>{1, 0, 0, 0.25}).to_dtype(dtype);
    Tensor dlogits;
    double loss = bce_with_logits(ctx, logits, targets, &dlogits);
    // max(z,0) - z t + log(1+exp(-|z|)) -> [0, 0, 1e4, 0.25e4]; sigmoid -> [1, 0, 1, 0].
    CHECK(loss == doctest::Approx((1e4 + 2500) / 4).epsilon(1e-15));
    std::vector<double> expected = {0, 0, 1.0 / 4, -0.25 / 4};
    for (int64_t i = 0; i < 4; ++i) CHECK(dlogits.item(i) == expected[size_t(i)]);
  }
}

TEST_CASE("bce with logits names a bad target and mismatched sizes") {
  Context ctx;
  Tensor logits = Tensor::zeros({3}, DType::F64);
  CHECK_THROWS_WITH(bce_with_logits(ctx, logits, Tensor::from_vector({3}, std::vector<double>{0, 1.5, 1}), nullptr),
                    "bce_with_logits: target 1.5 at index 1 is outside [0, 1]");
  CHECK_THROWS_WITH(bce_with_logits(ctx, logits, Tensor::zeros({4}, DType::F64), nullptr),
                    "bce_with_logits: targets [4] must have as many elements as logits [3]");
  CHECK_THROWS_WITH(bce_with_logits(ctx, Tensor::zeros({3, 2}, DType::F64), Tensor::zeros({6}, DType::F64), nullptr),
                    "bce_with_logits: logits must be [N] or [N,1] with N >= 1, got [3,2]");
}
