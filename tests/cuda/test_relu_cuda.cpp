#include <cmath>
#include <limits>

#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/relu.h"
#include "cuda/cuda_compare.h"
#include "support/test_util.h"

using namespace tl;

// Elementwise op, exact in float on both sides: the tolerance 1e-5 (DESIGN.md) is loose here.
CUDA_TEST_CASE("relu forward and backward on CUDA match the CPU twin") {
  Context ctx({.device = Device::CUDA});
  Rng rng(3);
  for (int64_t n : {int64_t(1), int64_t(1023), int64_t(8 * 1024 * 1024 + 17)}) {
    Tensor x = test::random_tensor(rng, {n}, DType::F32);
    Tensor dy = test::random_tensor(rng, {n}, DType::F32);
    Tensor y_cpu = Tensor::empty({n}), dx_cpu = Tensor::empty({n});
    relu_forward(ctx, x, y_cpu);
    relu_backward(ctx, y_cpu, dy, dx_cpu);

    Tensor xg = x.to(ctx, Device::CUDA), dyg = dy.to(ctx, Device::CUDA);
    Tensor yg = Tensor::empty(ctx, {n}, DType::F32, Device::CUDA);
    Tensor dxg = Tensor::empty(ctx, {n}, DType::F32, Device::CUDA);
    yg.fill(ctx, std::numeric_limits<double>::quiet_NaN());  // poison: every element must be written
    dxg.fill(ctx, std::numeric_limits<double>::quiet_NaN());
    relu_forward(ctx, xg, yg);
    relu_backward(ctx, yg, dyg, dxg);
    Tensor y_back = yg.to(ctx, Device::CPU), dx_back = dxg.to(ctx, Device::CPU);
    CHECK(test::relative_l2(y_back, y_cpu) <= 1e-5);
    CHECK(test::relative_l2(dx_back, dx_cpu) <= 1e-5);
  }
}
