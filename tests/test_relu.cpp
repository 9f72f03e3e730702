#include <doctest/doctest.h>

#include "engine/context.h"
#include "support/gradcheck.h"
#include "kernels/relu.h"
#include "layers/relu.h"
#include "support/test_util.h"

using namespace tl;

TEST_CASE("relu forward zeroes negatives and keeps positives") {
  Context ctx;
  Tensor x = Tensor::from_vector({4}, std::vector<double>{-2.0, -0.5, 0.25, 3.0});
  Tensor y = Tensor::full({4}, 99.0, DType::F64);  // pre-filled: the kernel must write every element
  relu_forward(ctx, x, y);
  CHECK(y.to_vector() == std::vector<double>{0.0, 0.0, 0.25, 3.0});
}

TEST_CASE("relu backward matches finite differences in double") {
  Context ctx;
  Rng rng(11);
  ReLU relu;
  Tensor x = test::random_away_from_zero(rng, {3, 2, 7, 5});
  auto report = test::check_layer_gradients(ctx, relu, x);
  INFO(report.worst);
  CHECK(report.max_rel_error <= 1e-6);
  CHECK(report.checked > 0);
}

TEST_CASE("relu rejects mismatched shapes with both shapes named") {
  Context ctx;
  Tensor x = Tensor::zeros({2, 3});
  Tensor y = Tensor::zeros({3, 2});
  CHECK_THROWS_WITH(relu_forward(ctx, x, y), "relu_forward: shape mismatch, [2,3] vs [3,2]");
}
