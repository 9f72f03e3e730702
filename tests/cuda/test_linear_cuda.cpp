// Linear's cuBLAS twin against the CPU twin run in F64 on the same (F32) values, so the error
// measured is the GPU's alone. y and dx start as NaN; dw and dbias accumulate and start from random
// values on the gradients' own scale (an overwrite instead of += would be off by ~50%).
// Tolerance 1e-5 (relative L2): strict FP32 sums of at most 512 products (forward), 1000 (backward
// data) or 128 (backward weight), ~1e-7 relative. The context keeps its default tf32() == true on
// purpose: linear must ignore it (PyTorch's matmul default), and TF32 rounding would show as ~5e-4.
#include <cmath>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/linear.h"
#include "support/test_util.h"

using namespace tl;
using test::f64;
using test::random_on_scale_of;
using test::sum_f64;
using test::cuda_vs_cpu_error;
using test::poisoned_cuda;
using test::to_cuda;

namespace {

constexpr double kTolerance = 1e-5;

struct LinearCase {
  int64_t batch, in, out;
};


void check_case(Context& ctx, Rng& rng, const LinearCase& c, bool with_bias) {
  const Shape x_shape{c.batch, c.in}, w_shape{c.out, c.in}, y_shape{c.batch, c.out}, b_shape{c.out};
  Tensor x = test::random_tensor(rng, x_shape, DType::F32);
  Tensor w = test::random_tensor(rng, w_shape, DType::F32);
  Tensor b = test::random_tensor(rng, b_shape, DType::F32);
  Tensor dy = test::random_tensor(rng, y_shape, DType::F32);

  Tensor x64 = f64(x), w64 = f64(w), b64 = f64(b), dy64 = f64(dy);
  Tensor y_ref = Tensor::empty(y_shape, DType::F64), dx_ref = Tensor::empty(x_shape, DType::F64);
  Tensor dw_grad = Tensor::zeros(w_shape, DType::F64), db_grad = Tensor::zeros(b_shape, DType::F64);
  linear_forward(ctx, x64, w64, with_bias ? &b64 : nullptr, y_ref);
  linear_backward_data(ctx, dy64, w64, dx_ref);
  linear_backward_weight(ctx, x64, dy64, dw_grad, &db_grad);
  Tensor dw0 = random_on_scale_of(rng, dw_grad), db0 = random_on_scale_of(rng, db_grad);
  Tensor db_alone0 = random_on_scale_of(rng, db_grad);
  Tensor dw_ref = sum_f64(dw0, dw_grad), db_ref = sum_f64(db0, db_grad), db_alone_ref = sum_f64(db_alone0, db_grad);

  Tensor xg = to_cuda(ctx, x), wg = to_cuda(ctx, w), bg = to_cuda(ctx, b), dyg = to_cuda(ctx, dy);
  Tensor yg = poisoned_cuda(ctx, y_shape), dxg = poisoned_cuda(ctx, x_shape);
  Tensor dwg = to_cuda(ctx, dw0), dbg = to_cuda(ctx, db0), db_alone = to_cuda(ctx, db_alone0);
  linear_forward(ctx, xg, wg, with_bias ? &bg : nullptr, yg);
  linear_backward_data(ctx, dyg, wg, dxg);
  linear_backward_weight(ctx, xg, dyg, dwg, with_bias ? &dbg : nullptr);
  linear_backward_bias(ctx, dyg, db_alone);

  CHECK(cuda_vs_cpu_error(ctx, yg, y_ref) <= kTolerance);
  CHECK(cuda_vs_cpu_error(ctx, dxg, dx_ref) <= kTolerance);
  CHECK(cuda_vs_cpu_error(ctx, dwg, dw_ref) <= kTolerance);
  if (with_bias) CHECK(cuda_vs_cpu_error(ctx, dbg, db_ref) <= kTolerance);
  else CHECK(test::bit_identical(test::to_host(ctx, dbg), db0));  // not passed: untouched
  CHECK(cuda_vs_cpu_error(ctx, db_alone, db_alone_ref) <= kTolerance);
}

}  // namespace

CUDA_TEST_CASE("linear on CUDA (cuBLAS) matches the CPU twin in strict FP32") {
  Context ctx({.device = Device::CUDA});
  REQUIRE(ctx.tf32());  // see the file comment: linear must not use it
  Rng rng(21);
  // 1 element; odd sizes; the ResNet/VGG head shape (batch 128, 512 features, 1000 classes).
  for (LinearCase c : {LinearCase{1, 1, 1}, LinearCase{3, 7, 5}, LinearCase{128, 512, 1000}}) {
    for (bool with_bias : {true, false}) {
      CAPTURE(c.batch);
      CAPTURE(c.in);
      CAPTURE(c.out);
      CAPTURE(with_bias);
      check_case(ctx, rng, c, with_bias);
    }
  }
}

// A batch larger than the first ones vector (1024 entries) makes the cache grow it.
CUDA_TEST_CASE("linear on CUDA: bias broadcast and column sums beyond the first ones vector") {
  Context ctx({.device = Device::CUDA});
  Rng rng(22);
  check_case(ctx, rng, LinearCase{5, 3, 2}, true);     // makes the first vector (1024 ones)
  check_case(ctx, rng, LinearCase{1500, 3, 2}, true);  // grows it
  check_case(ctx, rng, LinearCase{5, 3, 2}, true);     // back to a small batch: the grown vector serves
}
