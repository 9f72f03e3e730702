// Conv2d's cuDNN twin against the CPU twin. Inputs are fresh random F32; the CPU twin runs on the
// same values converted to F64, so the reference is (nearly) exact and the error measured is the
// GPU's alone. Outputs that are overwritten (y, dx) start as NaN; gradients that accumulate (dw,
// dbias) start from random values on the scale of the gradient itself, so a kernel that overwrote
// instead of adding would be off by ~50%.
// Tolerances (relative L2):
// - strict FP32 (ctx.tf32() false): 1e-4, the bound DESIGN.md sets for convolutions. Each output is
//   a sum of C*KH*KW (forward, up to 4608 here), O*KH*KW (backward data) or N*OH*OW (backward filter,
//   up to 25088 for the stem) float products. A GEMM-style order stays near 1e-6 relative (a plain
//   running sum of K zero-mean terms: about 2^-24 * sqrt(K / 6), 4e-6 at K = 25088), but cuDNN may
//   pick FFT or Winograd (F(4x4,3x3) transforms amplify rounding several-fold), which can reach
//   ~1e-5 on the 512-channel case: 1e-5 would fail for no bug. 1e-4 still catches a TF32 kernel
//   slipping into strict mode (~5e-4, below) and any indexing or accumulation error (>= 1e-2).
// - TF32 on: 5e-3. Tensor cores round both inputs to a 10-bit mantissa (relative error up to
//   2^-11 each), which gives ~5e-4 relative error on random data; 5e-3 leaves a margin of 10.
// - bias gradients: 1e-5 in both modes (a plain float reduction, not a tensor-core product).
// On failure the message names the cuDNN algorithms chosen (CudnnAlgorithmCache::describe).
#include <cmath>
#include <string>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/conv2d_algorithms.h"
#include "support/test_util.h"

using namespace tl;
using test::f64;
using test::random_on_scale_of;
using test::sum_f64;
using test::cuda_vs_cpu_error;
using test::poisoned_cuda;
using test::to_cuda;

namespace {

constexpr double kStrictTolerance = 1e-4;
constexpr double kTf32Tolerance = 5e-3;
constexpr double kBiasTolerance = 1e-5;

struct ConvCase {
  const char* name;
  Shape x, w;
  Conv2dParams p;
  bool bias;
};

const ConvCase kCases[] = {
    {"3x3 stride 1 pad 1", {3, 5, 7, 9}, {4, 5, 3, 3}, {1, 1, 1, 1}, true},
    {"3x3 stride 1 pad 1, no bias", {3, 5, 7, 9}, {4, 5, 3, 3}, {1, 1, 1, 1}, false},
    {"3x3 stride 2 pad 1 on odd sizes", {2, 3, 9, 11}, {6, 3, 3, 3}, {2, 2, 1, 1}, true},
    {"1x1 stride 2 (ResNet downsample)", {2, 64, 15, 15}, {128, 64, 1, 1}, {2, 2, 0, 0}, false},
    {"7x7 stride 2 pad 3 (ResNet stem)", {2, 3, 224, 224}, {64, 3, 7, 7}, {2, 2, 3, 3}, false},
    {"3x3 512 -> 512 on 14x14", {2, 512, 14, 14}, {512, 512, 3, 3}, {1, 1, 1, 1}, true},
    {"unequal strides and padding", {2, 2, 6, 7}, {3, 2, 2, 3}, {1, 2, 0, 1}, true},
    {"one element", {1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 0, 0}, true},
};


Shape output_shape(const ConvCase& c) {
  return {c.x[0], c.w[0], conv2d_output_size(c.x[2], c.w[2], c.p.stride_h, c.p.pad_h),
          conv2d_output_size(c.x[3], c.w[3], c.p.stride_w, c.p.pad_w)};
}

void check_case(Context& ctx, Rng& rng, const ConvCase& c) {
  const Shape y_shape = output_shape(c);
  const Shape b_shape{c.w[0]};
  Tensor x = test::random_tensor(rng, c.x, DType::F32);
  Tensor w = test::random_tensor(rng, c.w, DType::F32);
  Tensor b = test::random_tensor(rng, b_shape, DType::F32);
  Tensor dy = test::random_tensor(rng, y_shape, DType::F32);

  // Reference in double: y, dx, and the gradients from zero.
  Tensor x64 = f64(x), w64 = f64(w), b64 = f64(b), dy64 = f64(dy);
  Tensor y_ref = Tensor::empty(y_shape, DType::F64), dx_ref = Tensor::empty(c.x, DType::F64);
  Tensor dw_grad = Tensor::zeros(c.w, DType::F64), db_grad = Tensor::zeros(b_shape, DType::F64);
  conv2d_forward(ctx, x64, w64, c.bias ? &b64 : nullptr, y_ref, c.p);
  conv2d_backward_data(ctx, dy64, w64, dx_ref, c.p);
  conv2d_backward_filter(ctx, x64, dy64, dw_grad, &db_grad, c.p);
  // Accumulators start non-zero, on the gradients' own scale.
  Tensor dw0 = random_on_scale_of(rng, dw_grad), db0 = random_on_scale_of(rng, db_grad);
  Tensor db_alone0 = random_on_scale_of(rng, db_grad);
  Tensor dw_ref = sum_f64(dw0, dw_grad), db_ref = sum_f64(db0, db_grad), db_alone_ref = sum_f64(db_alone0, db_grad);

  for (bool tf32 : {false, true}) {
    ctx.set_tf32(tf32);
    const double tolerance = tf32 ? kTf32Tolerance : kStrictTolerance;
    Tensor xg = to_cuda(ctx, x), wg = to_cuda(ctx, w), bg = to_cuda(ctx, b), dyg = to_cuda(ctx, dy);
    Tensor yg = poisoned_cuda(ctx, y_shape), dxg = poisoned_cuda(ctx, c.x);
    Tensor dwg = to_cuda(ctx, dw0), dbg = to_cuda(ctx, db0), db_alone = to_cuda(ctx, db_alone0);
    conv2d_forward(ctx, xg, wg, c.bias ? &bg : nullptr, yg, c.p);
    conv2d_backward_data(ctx, dyg, wg, dxg, c.p);
    conv2d_backward_filter(ctx, xg, dyg, dwg, c.bias ? &dbg : nullptr, c.p);
    conv2d_backward_bias(ctx, dyg, db_alone);

    INFO(c.name, tf32 ? " with TF32" : " in strict FP32", "; cuDNN chose:\n",
         cudnn_algorithm_cache(ctx).describe());
    CHECK(cuda_vs_cpu_error(ctx, yg, y_ref) <= tolerance);
    CHECK(cuda_vs_cpu_error(ctx, dxg, dx_ref) <= tolerance);
    CHECK(cuda_vs_cpu_error(ctx, dwg, dw_ref) <= tolerance);
    // Without a bias the filter gradient must leave dbias alone (it was not passed): nothing to check.
    if (c.bias) CHECK(cuda_vs_cpu_error(ctx, dbg, db_ref) <= kBiasTolerance);
    CHECK(cuda_vs_cpu_error(ctx, db_alone, db_alone_ref) <= kBiasTolerance);
  }
}

}  // namespace

CUDA_TEST_CASE("conv2d on CUDA (cuDNN) matches the CPU twin, strict FP32 and TF32") {
  Context ctx({.device = Device::CUDA});
  Rng rng(11);
  for (const ConvCase& c : kCases) {
    CAPTURE(c.name);
    check_case(ctx, rng, c);
  }
  MESSAGE("cuDNN algorithms chosen:\n", cudnn_algorithm_cache(ctx).describe());
}

// The search runs once per key and direction; later calls reuse the plan and its algorithm, and the
// TF32 flag and the geometry are part of the key.
CUDA_TEST_CASE("conv2d cuDNN algorithm cache: searched once per shape and direction, then hit") {
  Context ctx({.device = Device::CUDA});
  Rng rng(12);
  const Conv2dParams p{1, 1, 1, 1};
  Tensor x = to_cuda(ctx, test::random_tensor(rng, {2, 8, 10, 10}, DType::F32));
  Tensor w = to_cuda(ctx, test::random_tensor(rng, {16, 8, 3, 3}, DType::F32));
  Tensor dy = to_cuda(ctx, test::random_tensor(rng, {2, 16, 10, 10}, DType::F32));
  Tensor y = poisoned_cuda(ctx, {2, 16, 10, 10}), dx = poisoned_cuda(ctx, {2, 8, 10, 10});
  Tensor dw = Tensor::zeros(ctx, {16, 8, 3, 3}, DType::F32, Device::CUDA);
  ctx.set_tf32(false);

  conv2d_forward(ctx, x, w, nullptr, y, p);
  CudnnAlgorithmCache& cache = cudnn_algorithm_cache(ctx);
  CHECK(cache.size() == 1);
  CHECK(cache.searches() == 1);
  Tensor first = test::to_host(ctx, y);

  y.fill(ctx, std::nan(""));
  conv2d_forward(ctx, x, w, nullptr, y, p);  // hit: no new search, same algorithm, same bits
  CHECK(cache.size() == 1);
  CHECK(cache.searches() == 1);
  CHECK(test::bit_identical(test::to_host(ctx, y), first));

  conv2d_backward_data(ctx, dy, w, dx, p);  // same plan, new direction
  conv2d_backward_filter(ctx, x, dy, dw, nullptr, p);
  CHECK(cache.size() == 1);
  CHECK(cache.searches() == 3);
  conv2d_backward_data(ctx, dy, w, dx, p);
  conv2d_backward_filter(ctx, x, dy, dw, nullptr, p);
  conv2d_forward(ctx, x, w, nullptr, y, p);
  CHECK(cache.searches() == 3);

  ctx.set_tf32(true);  // the math mode is part of the key
  conv2d_forward(ctx, x, w, nullptr, y, p);
  CHECK(cache.size() == 2);
  CHECK(cache.searches() == 4);

  const Conv2dParams stride2{2, 2, 1, 1};  // so is the geometry
  Tensor y2 = poisoned_cuda(ctx, {2, 16, 5, 5});
  conv2d_forward(ctx, x, w, nullptr, y2, stride2);
  CHECK(cache.size() == 3);
  CHECK(cache.searches() == 5);
  MESSAGE(cache.describe());
}

// Shapes cuDNN cannot describe are handled before it: no images leaves outputs empty and
// accumulators unchanged.
CUDA_TEST_CASE("conv2d on CUDA with an empty batch writes nothing and adds nothing") {
  Context ctx({.device = Device::CUDA});
  const Conv2dParams p{1, 1, 1, 1};
  Tensor x = Tensor::empty(ctx, {0, 3, 5, 5}, DType::F32, Device::CUDA);
  Tensor w = to_cuda(ctx, Tensor::full({4, 3, 3, 3}, 0.5));
  Tensor y = Tensor::empty(ctx, {0, 4, 5, 5}, DType::F32, Device::CUDA);
  Tensor dw = to_cuda(ctx, Tensor::full({4, 3, 3, 3}, 2.0)), db = to_cuda(ctx, Tensor::full({4}, 3.0));
  conv2d_forward(ctx, x, w, nullptr, y, p);
  conv2d_backward_data(ctx, y, w, x, p);
  conv2d_backward_filter(ctx, x, y, dw, &db, p);
  conv2d_backward_bias(ctx, y, db);
  CHECK(test::bit_identical(test::to_host(ctx, dw), Tensor::full({4, 3, 3, 3}, 2.0)));
  CHECK(test::bit_identical(test::to_host(ctx, db), Tensor::full({4}, 3.0)));
}
