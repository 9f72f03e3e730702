// argmax_rows and count_correct on the CPU: hand-worked rows (ties, NaN, infinities, one class),
// both dtypes, and every shape or label error by its exact message.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/context.h"
#include "kernels/accuracy.h"
#include "support/test_util.h"

using namespace tl;
using test::labels_of;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();


std::vector<int64_t> as_ints(const Tensor& t) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(t.data<int64_t>()[i]);
  return out;
}

// Eight rows of four classes, each with its argmax worked out by hand.
const std::vector<double> kLogits = {
    0.5,  2.0,  -1.0, 1.5,    // 1: plain maximum
    3.0,  1.0,  3.0,  3.0,    // 0: three-way tie, the first wins
    -2.0, -1.0, -1.0, -3.0,   // 1: tie among negatives
    1.0,  kNaN, 9.0,  kNaN,   // 1: NaN above every number, the first NaN wins
    kNaN, 5.0,  6.0,  7.0,    // 0: a leading NaN is never beaten
    -kInf, -kInf, -kInf, -kInf,  // 0: all equal (to -inf)
    -kInf, 1e30, kInf, 2.0,   // 2: +inf is a number like any other
    -0.0, 0.0,  -1.0, -0.5,   // 0: -0 == +0, so the first of them
};
const std::vector<int64_t> kArgmax = {1, 0, 1, 1, 0, 0, 2, 0};

}  // namespace

TEST_CASE("argmax_rows takes the first maximum, NaN above every number, in F64 and F32") {
  Context ctx;
  for (DType dtype : {DType::F64, DType::F32}) {
    CAPTURE(dtype_name(dtype));
    Tensor logits = Tensor::from_vector({8, 4}, kLogits).to_dtype(dtype);
    Tensor indices = labels_of({-7, -7, -7, -7, -7, -7, -7, -7});  // garbage: every row must be written
    argmax_rows(ctx, logits, indices);
    CHECK(as_ints(indices) == kArgmax);

    Tensor allocated;  // undefined: allocated as I64 [N] on the CPU
    argmax_rows(ctx, logits, allocated);
    CHECK(allocated.dtype() == DType::I64);
    CHECK(allocated.shape() == Shape{8});
    CHECK(as_ints(allocated) == kArgmax);
  }
}

TEST_CASE("argmax_rows with one class answers 0, with one row answers that row's maximum") {
  Context ctx;
  Tensor indices;
  argmax_rows(ctx, Tensor::from_vector({3, 1}, std::vector<double>{-5, kNaN, 2}), indices);
  CHECK(as_ints(indices) == std::vector<int64_t>{0, 0, 0});
  Tensor one;
  argmax_rows(ctx, Tensor::from_vector({1, 5}, std::vector<float>{0.1f, 0.4f, 0.3f, 0.4f, -2.f}), one);
  CHECK(as_ints(one) == std::vector<int64_t>{1});
}

TEST_CASE("count_correct counts the rows whose argmax equals the label") {
  Context ctx;
  for (DType dtype : {DType::F64, DType::F32}) {
    CAPTURE(dtype_name(dtype));
    Tensor logits = Tensor::from_vector({8, 4}, kLogits).to_dtype(dtype);
    CHECK(count_correct(ctx, logits, labels_of(kArgmax)) == 8);
    // Rows 0, 3 and 6 right; rows 1, 2, 5 and 7 name a tied but later column, row 4 the largest number
    // of a row led by NaN.
    CHECK(count_correct(ctx, logits, labels_of({1, 2, 2, 1, 3, 1, 2, 1})) == 3);
    CHECK(count_correct(ctx, logits, labels_of({0, 1, 0, 0, 1, 1, 0, 1})) == 0);
  }
}

TEST_CASE("argmax_rows and count_correct name bad shapes, dtypes, devices and labels") {
  Context ctx;
  Tensor logits = Tensor::zeros({3, 4}, DType::F64);
  Tensor indices;
  CHECK_THROWS_WITH(argmax_rows(ctx, Tensor::zeros({12}, DType::F64), indices),
                    "argmax_rows: logits must be [N,C] with N,C >= 1, got [12]");
  CHECK_THROWS_WITH(argmax_rows(ctx, Tensor::zeros({0, 4}, DType::F64), indices),
                    "argmax_rows: logits must be [N,C] with N,C >= 1, got [0,4]");
  CHECK_THROWS_WITH(argmax_rows(ctx, Tensor::zeros({3, 0}, DType::F64), indices),
                    "argmax_rows: logits must be [N,C] with N,C >= 1, got [3,0]");
  CHECK_THROWS_WITH(argmax_rows(ctx, Tensor::zeros({3, 4}, DType::I64), indices),
                    "argmax_rows: logits must be F32 or F64, got I64[3,4] cpu");
  CHECK_FALSE(indices.defined());  // nothing allocated by a call that failed its checks
  Tensor short_indices = labels_of({0, 0});
  CHECK_THROWS_WITH(argmax_rows(ctx, logits, short_indices),
                    "argmax_rows: indices must be I64 [3] to match logits [3,4], got I64[2] cpu");
  Tensor float_indices = Tensor::zeros({3}, DType::F32);
  CHECK_THROWS_WITH(argmax_rows(ctx, logits, float_indices),
                    "argmax_rows: indices must be I64 [3] to match logits [3,4], got F32[3] cpu");

  CHECK_THROWS_WITH(count_correct(ctx, logits, labels_of({0, 4, 1})),
                    "count_correct: label 4 at index 1 is outside [0, 4) for logits [3,4]");
  CHECK_THROWS_WITH(count_correct(ctx, logits, labels_of({0, -1, 9})),
                    "count_correct: label -1 at index 1 is outside [0, 4) for logits [3,4]");
  CHECK_THROWS_WITH(count_correct(ctx, logits, labels_of({0, 1})),
                    "count_correct: labels must be I64 [3] to match logits [3,4], got I64[2] cpu");
  CHECK_THROWS_WITH(count_correct(ctx, Tensor::zeros({2, 3, 4}, DType::F32), labels_of({0, 1})),
                    "count_correct: logits must be [N,C] with N,C >= 1, got [2,3,4]");
}
