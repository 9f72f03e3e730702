#include <doctest/doctest.h>

#include "engine/context.h"
#include "kernels/elementwise.h"
#include "layers/flatten.h"
#include "support/gradcheck.h"
#include "support/test_util.h"

using namespace tl;

namespace {
// Crosses the CPU kernels' 65536-element chunks, with a partial last chunk.
const Shape kLong = {3 * 65536 + 17};

template <class T>
int64_t count_mismatches(const Tensor& got, const std::vector<T>& expected) {
  int64_t wrong = 0;
  for (int64_t i = 0; i < got.numel(); ++i) wrong += got.data<T>()[i] != expected[static_cast<size_t>(i)];
  return wrong;
}

template <class T>
void check_elementwise_exact(DType dtype) {
  Context ctx;
  Rng rng(41);
  Tensor a = test::random_tensor(rng, kLong, dtype), b = test::random_tensor(rng, kLong, dtype);
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  std::vector<T> sum(static_cast<size_t>(a.numel()));
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = pa[i] + pb[i];

  Tensor y = Tensor::full(kLong, 99.0, dtype);  // garbage: every element must be written
  add_forward(ctx, a, b, y);
  CHECK(count_mismatches<T>(y, sum) == 0);

  Tensor acc = a.clone();
  add_into(ctx, acc, b);
  CHECK(count_mismatches<T>(acc, sum) == 0);

  Tensor aliased = a.clone();
  add_forward(ctx, aliased, b, aliased);  // y may alias an input
  CHECK(count_mismatches<T>(aliased, sum) == 0);

  const double alpha = -0.37;
  std::vector<T> scaled(sum.size());
  for (size_t i = 0; i < scaled.size(); ++i) scaled[i] = pa[i] * static_cast<T>(alpha);
  Tensor s = a.clone();
  scale_into(ctx, s, alpha);
  CHECK(count_mismatches<T>(s, scaled) == 0);
}
}  // namespace

TEST_CASE("add_forward, add_into and scale_into are exact in float and double") {
  check_elementwise_exact<float>(DType::F32);
  check_elementwise_exact<double>(DType::F64);
}

TEST_CASE("elementwise ops name the op and both shapes on a mismatch") {
  Context ctx;
  Tensor a = Tensor::zeros({2, 3}, DType::F64);
  Tensor b = Tensor::zeros({3, 2}, DType::F64);
  Tensor y = Tensor::zeros({2, 3}, DType::F64);
  CHECK_THROWS_WITH(add_forward(ctx, a, b, y), "add_forward: shape mismatch, [2,3] vs [3,2]");
  CHECK_THROWS_WITH(add_into(ctx, y, b), "add_into: shape mismatch, [2,3] vs [3,2]");
  Tensor f = Tensor::zeros({2, 3}, DType::F32);
  CHECK_THROWS_WITH(add_into(ctx, y, f), doctest::Contains("add_into: tensors differ in device or dtype"));
}

TEST_CASE("Flatten is a view [N, ...] -> [N, rest] and backward restores the input shape") {
  Context ctx;
  Rng rng(42);
  Tensor x = test::random_tensor(rng, {3, 2, 7, 5});
  Flatten flatten;
  Tensor y = flatten.forward(ctx, x, Mode::Train);
  CHECK(y.shape() == Shape{3, 70});
  CHECK(y.shares_storage_with(x));
  CHECK(y.to_vector() == x.to_vector());  // row-major order kept

  Tensor dy = test::random_tensor(rng, {3, 70});
  Tensor dx = flatten.backward(ctx, dy, true);
  CHECK(dx.shape() == x.shape());
  CHECK(dx.to_vector() == dy.to_vector());

  // A batch's slice flattens too (views carry an offset).
  Tensor tail = flatten.forward(ctx, x.slice(1, 3), Mode::Eval);
  CHECK(tail.shape() == Shape{2, 70});
  CHECK(tail.item(0) == x.item(70));

  CHECK(flatten.forward(ctx, Tensor::zeros({4, 9}), Mode::Eval).shape() == Shape{4, 9});
  CHECK_THROWS_WITH(flatten.forward(ctx, Tensor::zeros({4}), Mode::Eval),
                    doctest::Contains("expected an input of at least 2 dims"));
  flatten.forward(ctx, x, Mode::Train);
  CHECK_THROWS_WITH(flatten.backward(ctx, Tensor::zeros({3, 69}, DType::F64), true),
                    doctest::Contains("gradient [3,69] expected [3,70]"));
}

TEST_CASE("Flatten gradients match finite differences in double") {
  Context ctx;
  Rng rng(43);
  Flatten flatten;
  auto report = test::check_layer_gradients(ctx, flatten, test::random_tensor(rng, {3, 2, 7, 5}));
  MESSAGE("Flatten max rel error ", report.max_rel_error);
  INFO(report.worst);
  CHECK(report.max_rel_error <= 1e-6);  // the identity on values: only rounding remains
  CHECK(report.checked > 0);
}
