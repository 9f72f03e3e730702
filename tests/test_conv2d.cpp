#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/context.h"
#include "kernels/conv2d.h"
#include "layers/conv2d.h"
#include "support/gradcheck.h"
#include "support/test_util.h"

using namespace tl;

namespace {

constexpr double kGarbage = 777.25;  // pre-fills outputs: an element a kernel forgets to write stays visible

// Direct convolution, independent of im2col: y[n,o,oh,ow] = b[o] + sum_{c,kh,kw} w[o,c,kh,kw] x[n,c,ih,iw].
// Computed in double from whatever dtype the inputs have.
Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dParams& p) {
  int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = w.size(0), KH = w.size(2), KW = w.size(3);
  int64_t OH = conv2d_output_size(H, KH, p.stride_h, p.pad_h), OW = conv2d_output_size(W, KW, p.stride_w, p.pad_w);
  Tensor y = Tensor::zeros({N, O, OH, OW}, DType::F64);
  double* out = y.data<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double sum = b ? b->item(o) : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t ih = oh * p.stride_h - p.pad_h + kh, iw = ow * p.stride_w - p.pad_w + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                sum += w.item(((o * C + c) * KH + kh) * KW + kw) * x.item(((n * C + c) * H + ih) * W + iw);
              }
          out[((n * O + o) * OH + oh) * OW + ow] = sum;
        }
  return y;
}

// The same loops scattered backwards: dx[n,c,ih,iw] += w dy and dw[o,c,kh,kw] += x dy.
void naive_conv_backward(const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dParams& p, Tensor& dx,
                         Tensor& dw) {
  int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = w.size(0), KH = w.size(2), KW = w.size(3);
  int64_t OH = dy.size(2), OW = dy.size(3);
  dx = Tensor::zeros(x.shape(), DType::F64);
  dw = Tensor::zeros(w.shape(), DType::F64);
  double* gx = dx.data<double>();
  double* gw = dw.data<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double g = dy.item(((n * O + o) * OH + oh) * OW + ow);
          for (int64_t c = 0; c < C; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t ih = oh * p.stride_h - p.pad_h + kh, iw = ow * p.stride_w - p.pad_w + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                int64_t xi = ((n * C + c) * H + ih) * W + iw, wi = ((o * C + c) * KH + kh) * KW + kw;
                gx[xi] += w.item(wi) * g;
                gw[wi] += x.item(xi) * g;
              }
        }
}

struct KernelCase {
  Shape x, w;
  Conv2dParams p;
  bool bias;
};

// Odd sizes throughout; a non-square kernel with different strides and paddings per axis; a
// pointwise conv (the fast path without im2col); padding larger than needed; batch 1 (fewer images
// than threads: the parallel-GEMM path).
const KernelCase kKernelCases[] = {
    {{3, 4, 7, 5}, {5, 4, 3, 3}, {2, 2, 1, 1}, true},  {{3, 4, 7, 5}, {6, 4, 1, 1}, {1, 1, 0, 0}, true},
    {{3, 4, 7, 5}, {6, 4, 1, 1}, {2, 2, 0, 0}, false}, {{3, 3, 7, 5}, {2, 3, 3, 3}, {1, 1, 0, 0}, false},
    {{2, 3, 9, 6}, {4, 3, 3, 2}, {2, 1, 1, 0}, true},  {{1, 2, 5, 7}, {3, 2, 3, 3}, {1, 2, 2, 1}, true},
    {{5, 3, 6, 6}, {4, 3, 5, 5}, {3, 3, 2, 2}, false},
};

std::string describe(const KernelCase& k) {
  return str("x ", shape_str(k.x), " w ", shape_str(k.w), " stride ", k.p.stride_h, "x", k.p.stride_w, " pad ",
             k.p.pad_h, "x", k.p.pad_w, k.bias ? " bias" : "");
}

void check_kernels_against_naive(int threads, DType dtype, double tolerance) {
  Context ctx(ContextOptions{.threads = threads});
  Rng rng(21);
  for (const KernelCase& k : kKernelCases) {
    INFO(describe(k), " threads ", threads, " ", dtype_name(dtype));
    Tensor x = test::random_tensor(rng, k.x, dtype);
    Tensor w = test::random_tensor(rng, k.w, dtype);
    Tensor b = test::random_tensor(rng, {k.w[0]}, dtype);
    Tensor expected = naive_conv(x, w, k.bias ? &b : nullptr, k.p);
    Tensor y = Tensor::full(expected.shape(), kGarbage, dtype);
    conv2d_forward(ctx, x, w, k.bias ? &b : nullptr, y, k.p);
    CHECK(test::relative_l2(y, expected) <= tolerance);

    Tensor dy = test::random_tensor(rng, expected.shape(), dtype);
    Tensor dx_expected, dw_expected;
    naive_conv_backward(x, w, dy, k.p, dx_expected, dw_expected);
    Tensor dx = Tensor::full(x.shape(), kGarbage, dtype);
    conv2d_backward_data(ctx, dy, w, dx, k.p);
    CHECK(test::relative_l2(dx, dx_expected) <= tolerance);

    // Filter and bias gradients accumulate: start from known values and expect them plus the gradient.
    Tensor start_w = test::random_tensor(rng, w.shape(), DType::F64);
    Tensor start_b = test::random_tensor(rng, b.shape(), DType::F64);
    Tensor dw = start_w.to_dtype(dtype), db = start_b.to_dtype(dtype);
    conv2d_backward_filter(ctx, x, dy, dw, k.bias ? &db : nullptr, k.p);
    double* ew = dw_expected.data<double>();
    for (int64_t i = 0; i < dw_expected.numel(); ++i) ew[i] += start_w.item(i);
    CHECK(test::relative_l2(dw, dw_expected) <= tolerance);
    if (k.bias) {
      Tensor db_expected = start_b.clone();
      double* eb = db_expected.data<double>();
      for (int64_t i = 0; i < dy.numel(); ++i) eb[(i / (dy.size(2) * dy.size(3))) % dy.size(1)] += dy.item(i);
      CHECK(test::relative_l2(db, db_expected) <= tolerance);
    }
  }
}

}  // namespace

TEST_CASE("conv2d_output_size follows PyTorch and rejects empty outputs") {
  CHECK(conv2d_output_size(7, 3, 2, 1) == 4);
  CHECK(conv2d_output_size(5, 3, 2, 1) == 3);
  CHECK(conv2d_output_size(224, 7, 2, 3) == 112);
  CHECK(conv2d_output_size(3, 3, 1, 0) == 1);
  CHECK_THROWS_AS(conv2d_output_size(2, 5, 1, 0), Error);
  CHECK_THROWS_AS(conv2d_output_size(2, 5, 1, 1), Error);  // span -1: must not truncate to an output of 1
  CHECK_THROWS_AS(conv2d_output_size(7, 3, 0, 1), Error);
}

TEST_CASE("conv2d kernels match a direct 7-loop convolution") {
  // Double: the same sums in another order, so only rounding differs (~1e-16 per term).
  SUBCASE("double, 2 threads") { check_kernels_against_naive(2, DType::F64, 1e-13); }
  SUBCASE("double, 1 thread") { check_kernels_against_naive(1, DType::F64, 1e-13); }
  // Float: sums of at most 75 products (or 3*7*5 positions for dw) in float against a double reference;
  // float rounding is ~6e-8 per operation, so 1e-5 leaves margin while catching any wrong term.
  SUBCASE("float, 2 threads") { check_kernels_against_naive(2, DType::F32, 1e-5); }
  SUBCASE("float, 1 thread") { check_kernels_against_naive(1, DType::F32, 1e-5); }
}

TEST_CASE("conv2d filter gradient does not depend on scheduling") {
  Context ctx(ContextOptions{.threads = 2});
  Rng rng(5);
  Conv2dParams p{2, 2, 1, 1};
  Tensor x = test::random_tensor(rng, {7, 8, 11, 9}, DType::F32);
  Tensor dy = test::random_tensor(rng, {7, 6, 6, 5}, DType::F32);
  Tensor first = Tensor::zeros({6, 8, 3, 3}), second = Tensor::zeros({6, 8, 3, 3});
  conv2d_backward_filter(ctx, x, dy, first, nullptr, p);
  for (int repeat = 0; repeat < 3; ++repeat) {
    second.fill(0.0);
    conv2d_backward_filter(ctx, x, dy, second, nullptr, p);
    CHECK(test::bit_identical(first, second));
  }
}

TEST_CASE("Conv2d gradients match finite differences in double") {
  struct LayerCase {
    int64_t in, out, kernel, stride, padding;
    bool bias;
  };
  const LayerCase cases[] = {
      {4, 5, 3, 2, 1, true}, {4, 5, 3, 2, 1, false}, {4, 6, 1, 1, 0, true},
      {4, 6, 1, 1, 0, false}, {3, 2, 3, 1, 0, true}, {3, 2, 3, 1, 0, false},
      {4, 3, 1, 2, 0, false},  // ResNet's downsample: pointwise with stride
  };
  Context ctx;
  Rng rng(31);
  for (const LayerCase& c : cases) {
    Conv2d conv(c.in, c.out, c.kernel, c.stride, c.padding, c.bias);
    test::to_double(conv);
    conv.reset_parameters(rng);
    Tensor x = test::random_tensor(rng, {3, c.in, 7, 5});
    auto report = test::check_layer_gradients(ctx, conv, x);
    std::string label = str("Conv2d(", c.in, ", ", c.out, ", k", c.kernel, ", s", c.stride, ", p", c.padding,
                            c.bias ? ", bias" : ", no bias", ") on [3,", c.in, ",7,5]");
    MESSAGE(label, ": max rel error ", report.max_rel_error, " over ", report.checked, " elements");
    INFO(label, " worst ", report.worst);
    CHECK(report.max_rel_error <= 1e-6);
    CHECK(report.checked > 0);
  }
}

TEST_CASE("frozen Conv2d allocates no gradient and still gives the right dx") {
  Context ctx;
  Rng rng(41);
  Conv2d trained(3, 4, 3, 2, 1), frozen(3, 4, 3, 2, 1);
  trained.reset_parameters(rng);
  frozen.weight.value = trained.weight.value.clone();
  frozen.bias->value = trained.bias->value.clone();
  frozen.weight.set_trainable(false);
  Tensor x = test::random_tensor(rng, {3, 3, 7, 5}, DType::F32);
  Tensor dy = test::random_tensor(rng, {3, 4, 4, 3}, DType::F32);

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
  SUBCASE("no dx asked") {
    frozen.forward(ctx, x, Mode::Train);
    CHECK_FALSE(frozen.backward(ctx, dy, false).defined());
  }
}

TEST_CASE("Conv2d parameter gradients accumulate across backward calls; dx is overwritten") {
  Context ctx;
  Rng rng(51);
  Conv2d conv(3, 4, 3, 2, 1);
  test::to_double(conv);
  conv.reset_parameters(rng);
  Tensor x = test::random_tensor(rng, {3, 3, 7, 5});
  Tensor dy = test::random_tensor(rng, {3, 4, 4, 3});
  conv.forward(ctx, x, Mode::Train);
  Tensor dx1 = conv.backward(ctx, dy, true);
  Tensor w1 = conv.weight.grad().clone(), b1 = conv.bias->grad().clone();
  conv.forward(ctx, x, Mode::Train);
  Tensor dx2 = conv.backward(ctx, dy, true);
  CHECK(test::bit_identical(dx1, dx2));
  for (auto [once, twice] : {std::pair{w1, conv.weight.grad()}, std::pair{b1, conv.bias->grad()}}) {
    Tensor doubled = once.clone();
    for (int64_t i = 0; i < doubled.numel(); ++i) doubled.data<double>()[i] *= 2;
    // Summation order differs between the two calls (g + a vs 0 + a), so only rounding may differ.
    CHECK(test::relative_l2(twice, doubled) <= 1e-14);
  }
}

TEST_CASE("Conv2d names both shapes on a mismatch") {
  Context ctx;
  Conv2d conv(3, 4, 3);
  Tensor x = Tensor::zeros({2, 5, 8, 8});
  CHECK_THROWS_WITH(conv.forward(ctx, x, Mode::Eval),
                    "layer <unnamed> (Conv2d): input [2,5,8,8] has 5 channels but weight [4,3,3,3] expects 3");
  CHECK_THROWS_WITH(conv.forward(ctx, Tensor::zeros({5, 8, 8}), Mode::Eval),
                    "layer <unnamed> (Conv2d): expected a 4-d input (N,C,H,W), got F32[5,8,8] cpu");
  Tensor w = Tensor::zeros({4, 3, 3, 3});
  Tensor y = Tensor::zeros({2, 4, 5, 5});
  CHECK_THROWS_WITH(conv2d_forward(ctx, Tensor::zeros({2, 3, 8, 8}), w, nullptr, y, {}),
                    "conv2d_forward: output has shape [2,4,5,5], expected [2,4,6,6]");
  CHECK_THROWS_WITH(conv2d_forward(ctx, x, w, nullptr, y, {}),
                    "conv2d_forward: input [2,5,8,8] has 5 channels but weight [4,3,3,3] expects 3");
  Tensor dx = Tensor::zeros({2, 3, 8, 8});
  CHECK_THROWS_WITH(conv2d_backward_data(ctx, y, w, dx, {}),
                    "conv2d_backward_data: output gradient has shape [2,4,5,5], expected [2,4,6,6]");
}

TEST_CASE("Conv2d parameters follow PyTorch's names, shapes and default bounds") {
  Conv2d conv(3, 8, 5, 1, 2);
  CHECK(conv.kind() == "Conv2d");
  auto params = conv.local_parameters();
  REQUIRE(params.size() == 2);
  CHECK(params[0]->local_name() == "weight");
  CHECK(params[0]->value.shape() == Shape{8, 3, 5, 5});
  CHECK(params[1]->local_name() == "bias");
  CHECK(params[1]->value.shape() == Shape{8});
  CHECK(Conv2d(3, 8, 3, 1, 1, false).local_parameters().size() == 1);
  Rng rng(3);
  conv.reset_parameters(rng);
  double bound = 1.0 / std::sqrt(3.0 * 5 * 5), largest = 0;
  for (Parameter* p : params)
    for (double v : p->value.to_vector()) largest = std::max(largest, std::fabs(v));
  CHECK(largest <= bound);
  CHECK(largest > 0.9 * bound);  // 608 draws: not all of them stay in the inner 90%
}
