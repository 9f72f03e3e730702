#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "engine/context.h"
#include "kernels/pool2d.h"
#include "layers/adaptive_avgpool2d.h"
#include "layers/avgpool2d.h"
#include "layers/maxpool2d.h"
#include "support/gradcheck.h"
#include "support/test_util.h"

using namespace tl;

namespace {
// 4x4 plane used by the hand-computed examples (values chosen so every window has a distinct max).
const std::vector<double> kPlane = {1, 5, 2, 0,     //
                                    3, -1, 7, 4,    //
                                    6, 9, -2, 8,    //
                                    -3, 10, 11, -4};
const Pool2dParams kK3S2P1 = {3, 3, 2, 2, 1, 1};

void check_grad(Layer& layer, const Tensor& x) {
  Context ctx;
  test::to_double(layer);
  auto report = test::check_layer_gradients(ctx, layer, x);
  INFO(layer.kind(), " on ", shape_str(x.shape()), ": max rel error ", report.max_rel_error, ", worst ",
       report.worst);
  MESSAGE(layer.kind(), " ", shape_str(x.shape()), " max rel error ", report.max_rel_error);
  // 1e-6: central differences in double are exact for these piecewise-linear maps up to rounding.
  CHECK(report.max_rel_error <= 1e-6);
  CHECK(report.checked > 0);
}
}  // namespace

TEST_CASE("pool2d output size is floor((in + 2 pad - k) / s) + 1 and rejects bad geometry") {
  CHECK(pool2d_output_size(7, 3, 2, 1) == 4);
  CHECK(pool2d_output_size(5, 3, 2, 1) == 3);
  CHECK(pool2d_output_size(7, 2, 2, 0) == 3);  // floor, not ceil
  CHECK(pool2d_output_size(112, 3, 2, 1) == 56);  // ResNet's stem pool
  CHECK(pool2d_output_size(2, 2, 1, 0) == 1);
  CHECK_THROWS_WITH(pool2d_output_size(1, 3, 1, 0), "pool2d: input size 1 with padding 0 is smaller than kernel 3");
  CHECK_THROWS(pool2d_output_size(1, 4, 1, 1));  // span -1: truncating division would have said 1
  CHECK_THROWS(pool2d_output_size(7, 3, 0, 0));
  CHECK_THROWS(pool2d_output_size(7, 0, 1, 0));
  CHECK_THROWS_WITH(pool2d_output_size(7, 3, 1, 2), "pool2d: padding 2 must be in [0, kernel/2] for kernel 3");
}

TEST_CASE("maxpool2d forward and backward on a hand-computed 4x4 with padding") {
  Context ctx;
  Tensor x = Tensor::from_vector({1, 1, 4, 4}, kPlane);
  Tensor y = Tensor::full({1, 1, 2, 2}, 99.0, DType::F64);  // garbage: every element must be written
  Tensor idx = Tensor::full({1, 1, 2, 2}, -7.0, DType::I64);
  maxpool2d_forward(ctx, x, y, idx, kK3S2P1);
  // Windows cover rows/cols {0,1} and {1,2,3}: maxima 5 (at 1), 7 (at 6), 10 (at 13), 11 (at 14).
  CHECK(y.to_vector() == std::vector<double>{5, 7, 10, 11});
  CHECK(idx.to_vector() == std::vector<double>{1, 6, 13, 14});

  Tensor dy = Tensor::from_vector({1, 1, 2, 2}, std::vector<double>{1, 2, 3, 4});
  Tensor dx = Tensor::full({1, 1, 4, 4}, 99.0, DType::F64);
  maxpool2d_backward(ctx, dy, idx, dx);
  std::vector<double> expected(16, 0.0);
  expected[1] = 1, expected[6] = 2, expected[13] = 3, expected[14] = 4;
  CHECK(dx.to_vector() == expected);
}

TEST_CASE("maxpool2d padding is -inf, never a zero that beats negative inputs") {
  Context ctx;
  std::vector<double> negative(16);
  for (int i = 0; i < 16; ++i) negative[i] = -1.0 - i;
  Tensor x = Tensor::from_vector({1, 1, 4, 4}, negative);
  Tensor y = Tensor::full({1, 1, 2, 2}, 99.0, DType::F64);
  Tensor idx = Tensor::full({1, 1, 2, 2}, -7.0, DType::I64);
  maxpool2d_forward(ctx, x, y, idx, kK3S2P1);
  CHECK(y.to_vector() == std::vector<double>{-1, -2, -5, -6});  // each window's top-left in-bounds value
  CHECK(idx.to_vector() == std::vector<double>{0, 1, 4, 5});
}

TEST_CASE("maxpool2d overlapping windows sharing a maximum sum their gradients; NaN propagates") {
  Context ctx;
  Tensor x = Tensor::from_vector({1, 1, 1, 3}, std::vector<double>{0, 5, 1});
  Tensor y = Tensor::full({1, 1, 1, 2}, 99.0, DType::F64);
  Tensor idx = Tensor::full({1, 1, 1, 2}, -7.0, DType::I64);
  Pool2dParams k2s1 = {1, 2, 1, 1, 0, 0};
  maxpool2d_forward(ctx, x, y, idx, k2s1);
  CHECK(y.to_vector() == std::vector<double>{5, 5});
  CHECK(idx.to_vector() == std::vector<double>{1, 1});
  Tensor dy = Tensor::from_vector({1, 1, 1, 2}, std::vector<double>{1, 2});
  Tensor dx = Tensor::full({1, 1, 1, 3}, 99.0, DType::F64);
  maxpool2d_backward(ctx, dy, idx, dx);
  CHECK(dx.to_vector() == std::vector<double>{0, 3, 0});

  Tensor with_nan = Tensor::from_vector({1, 1, 1, 3}, std::vector<double>{0, std::nan(""), 1});
  maxpool2d_forward(ctx, with_nan, y, idx, k2s1);
  CHECK(std::isnan(y.item(0)));
  CHECK(std::isnan(y.item(1)));
  CHECK(idx.to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("avgpool2d forward and backward on a hand-computed 4x4 with padding (count_include_pad)") {
  Context ctx;
  Tensor x = Tensor::from_vector({1, 1, 4, 4}, kPlane);
  Tensor y = Tensor::full({1, 1, 2, 2}, 99.0, DType::F64);
  avgpool2d_forward(ctx, x, y, kK3S2P1);
  // Window sums 8, 17, 24, 42, always over 9 (padded zeros count).
  std::vector<double> expected = {8.0 / 9, 17.0 / 9, 24.0 / 9, 42.0 / 9};
  for (int i = 0; i < 4; ++i) CHECK(y.item(i) == doctest::Approx(expected[i]).epsilon(1e-15));

  // Backward: each input gets dy/9 from every window covering it; row/col 1 lies in both windows.
  Tensor dy = Tensor::from_vector({1, 1, 2, 2}, std::vector<double>{9, 18, 27, 36});
  Tensor dx = Tensor::full({1, 1, 4, 4}, 99.0, DType::F64);
  avgpool2d_backward(ctx, dy, dx, kK3S2P1);
  std::vector<double> expected_dx = {1, 1 + 2, 2, 2,            //
                                     1 + 3, 1 + 2 + 3 + 4, 2 + 4, 2 + 4,  //
                                     3, 3 + 4, 4, 4,            //
                                     3, 3 + 4, 4, 4};
  for (int i = 0; i < 16; ++i) CHECK(dx.item(i) == doctest::Approx(expected_dx[i]).epsilon(1e-15));
}

TEST_CASE("adaptive_avgpool2d uses PyTorch's bins: 5 -> 3 is [0,2) [1,4) [3,5); 2 -> 3 overlaps") {
  Context ctx;
  std::vector<double> row = {1, 2, 4, 8, 16};
  Tensor y = Tensor::full({1, 1, 1, 3}, 99.0, DType::F64);
  adaptive_avgpool2d_forward(ctx, Tensor::from_vector({1, 1, 1, 5}, row), y);
  std::vector<double> expected = {1.5, 14.0 / 3, 12.0};
  for (int i = 0; i < 3; ++i) CHECK(y.item(i) == doctest::Approx(expected[i]).epsilon(1e-15));
  Tensor y_col = Tensor::full({1, 1, 3, 1}, 99.0, DType::F64);
  adaptive_avgpool2d_forward(ctx, Tensor::from_vector({1, 1, 5, 1}, row), y_col);
  for (int i = 0; i < 3; ++i) CHECK(y_col.item(i) == doctest::Approx(expected[i]).epsilon(1e-15));

  Tensor up = Tensor::full({1, 1, 1, 3}, 99.0, DType::F64);
  adaptive_avgpool2d_forward(ctx, Tensor::from_vector({1, 1, 1, 2}, std::vector<double>{2, 6}), up);
  CHECK(up.to_vector() == std::vector<double>{2, 4, 6});

  // Backward of 5 -> 3: dy (6, 9, 4) spread as 3,3 | 3,3,3 | 2,2 over the overlapping bins.
  Tensor dx = Tensor::full({1, 1, 1, 5}, 99.0, DType::F64);
  adaptive_avgpool2d_backward(ctx, Tensor::from_vector({1, 1, 1, 3}, std::vector<double>{6, 9, 4}), dx);
  std::vector<double> expected_dx = {3, 6, 3, 5, 2};
  for (int i = 0; i < 5; ++i) CHECK(dx.item(i) == doctest::Approx(expected_dx[i]).epsilon(1e-15));
}

TEST_CASE("float pooling agrees with the double reference") {
  Context ctx;
  Rng rng(3);
  Tensor x64 = test::random_distinct(rng, {2, 3, 9, 6});  // no ties after rounding to float
  Tensor x32 = x64.to_dtype(DType::F32);
  Shape out = {2, 3, 5, 3};
  Tensor y64 = Tensor::empty(out, DType::F64), y32 = Tensor::full(out, 99.0, DType::F32);
  Tensor i64 = Tensor::empty(out, DType::I64), i32 = Tensor::full(out, -7.0, DType::I64);
  maxpool2d_forward(ctx, x64, y64, i64, kK3S2P1);
  maxpool2d_forward(ctx, x32, y32, i32, kK3S2P1);
  CHECK(test::bit_identical(i32, i64));
  CHECK(test::max_abs_diff(y32, y64.to_dtype(DType::F32)) == 0.0);  // max selects, it never rounds
  avgpool2d_forward(ctx, x64, y64, kK3S2P1);
  avgpool2d_forward(ctx, x32, y32, kK3S2P1);
  CHECK(test::relative_l2(y32, y64) <= 1e-6);  // float storage of inputs and outputs: ~6e-8 each
}

TEST_CASE("MaxPool2d gradients match finite differences in double") {
  Rng rng(21);
  MaxPool2d k3s2p1(3, 2, 1);
  check_grad(k3s2p1, test::random_distinct(rng, {3, 2, 7, 5}));  // distinct values: no ties at eps 1e-6
  MaxPool2d k2s2(2, 2);
  check_grad(k2s2, test::random_distinct(rng, {3, 2, 7, 5}));
  MaxPool2d k3s1p1(3, 1, 1);  // overlapping windows
  check_grad(k3s1p1, test::random_distinct(rng, {2, 3, 6, 5}));
}

TEST_CASE("AvgPool2d gradients match finite differences in double") {
  Rng rng(22);
  AvgPool2d k3s2p1(3, 2, 1);
  check_grad(k3s2p1, test::random_tensor(rng, {3, 2, 7, 5}));
  AvgPool2d k2(2);
  check_grad(k2, test::random_tensor(rng, {3, 2, 7, 5}));
  AvgPool2d k3s1p1(3, 1, 1);
  check_grad(k3s1p1, test::random_tensor(rng, {2, 3, 6, 5}));
}

TEST_CASE("AdaptiveAvgPool2d gradients match finite differences in double") {
  Rng rng(23);
  AdaptiveAvgPool2d to3x2(3, 2);
  check_grad(to3x2, test::random_tensor(rng, {3, 2, 7, 5}));
  AdaptiveAvgPool2d to7x7(7, 7);
  check_grad(to7x7, test::random_tensor(rng, {2, 2, 13, 13}));
  AdaptiveAvgPool2d global(1, 1);
  check_grad(global, test::random_tensor(rng, {3, 2, 7, 5}));
}

TEST_CASE("pooling layers: shapes, geometry checks, and no saved state outside training") {
  Context ctx;
  Rng rng(24);
  Tensor x = test::random_tensor(rng, {3, 2, 7, 5});
  MaxPool2d pool(3, 2, 1);
  CHECK(pool.params().stride_h == 2);
  CHECK(MaxPool2d(2).params().stride_w == 2);  // stride defaults to the kernel
  CHECK(pool.forward(ctx, x, Mode::Train).shape() == Shape{3, 2, 4, 3});
  CHECK(AvgPool2d(2).forward(ctx, x, Mode::Eval).shape() == Shape{3, 2, 3, 2});
  CHECK(AdaptiveAvgPool2d(1, 1).forward(ctx, x, Mode::Eval).shape() == Shape{3, 2, 1, 1});

  MaxPool2d eval_only(2);
  Tensor y = eval_only.forward(ctx, x, Mode::Eval);
  CHECK_THROWS_WITH(eval_only.backward(ctx, y, true), doctest::Contains("no saved activations"));
  AdaptiveAvgPool2d adaptive(3, 2);
  adaptive.forward(ctx, x, Mode::Train);
  CHECK_THROWS_WITH(adaptive.backward(ctx, Tensor::zeros({3, 2, 2, 3}, DType::F64), true),
                    doctest::Contains("gradient [3,2,2,3] expected [3,2,3,2]"));

  CHECK_THROWS_WITH(MaxPool2d(3, 2, 2), "MaxPool2d: padding 2 must be in [0, kernel_size/2] for kernel_size 3");
  CHECK_THROWS(AvgPool2d(0));
  CHECK_THROWS(AdaptiveAvgPool2d(0, 1));
  CHECK_THROWS_WITH(pool.forward(ctx, Tensor::zeros({2, 7, 5}), Mode::Eval), doctest::Contains("4-d input"));
}

TEST_CASE("pooling kernels name the op and both shapes on a mismatch") {
  Context ctx;
  Tensor x = Tensor::zeros({1, 2, 4, 4}, DType::F64);
  Tensor y = Tensor::zeros({1, 2, 3, 2}, DType::F64);
  Tensor idx = Tensor::zeros({1, 2, 2, 2}, DType::I64);
  CHECK_THROWS_WITH(maxpool2d_forward(ctx, x, y, idx, kK3S2P1),
                    "maxpool2d_forward: y has shape [1,2,3,2], expected [1,2,2,2]");
  Tensor y_ok = Tensor::zeros({1, 2, 2, 2}, DType::F64);
  CHECK_THROWS_WITH(maxpool2d_forward(ctx, x, y_ok, y_ok, kK3S2P1), doctest::Contains("indices must be I64"));
  CHECK_THROWS_WITH(avgpool2d_backward(ctx, y, x, kK3S2P1),
                    "avgpool2d_backward: dy has shape [1,2,3,2], expected [1,2,2,2]");
  Tensor other_batch = Tensor::zeros({2, 2, 1, 1}, DType::F64);
  CHECK_THROWS_WITH(adaptive_avgpool2d_forward(ctx, x, other_batch),
                    "adaptive_avgpool2d_forward: y [2,2,1,1] and x [1,2,4,4] differ in batch or channels");
}
