#include <cmath>
#include <cstdint>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/dropout.h"
#include "support/test_util.h"

using namespace tl;

// Both twins draw the mask from the same (seed, index) hash and multiply by the same float scale, so
// the tolerance is zero: the outputs must be bit-identical.

namespace {
int64_t count_zeros(const Tensor& host) {
  int64_t zeros = 0;
  for (double v : host.to_vector()) zeros += v == 0.0;
  return zeros;
}
}  // namespace

CUDA_TEST_CASE("dropout forward and backward on CUDA draw bit-identical masks to the CPU twin") {
  Context ctx({.device = Device::CUDA});
  Rng rng(17);
  for (int64_t n : {int64_t(1), int64_t(1023), int64_t(8 * 1024 * 1024 + 5)}) {
    // Never zero, so a zero in an output can only come from the mask.
    Tensor x = test::random_away_from_zero(rng, {n}, DType::F32);
    Tensor dy = test::random_away_from_zero(rng, {n}, DType::F32);
    Tensor xg = test::to_cuda(ctx, x), dyg = test::to_cuda(ctx, dy);
    for (double p : {0.0, 0.1, 0.5, 0.9}) {
      CAPTURE(n);
      CAPTURE(p);
      const uint64_t seed = rng.next_u64();
      Tensor y_cpu = Tensor::empty({n}), dx_cpu = Tensor::empty({n});
      dropout_forward(ctx, x, p, seed, y_cpu);
      dropout_backward(ctx, dy, p, seed, dx_cpu);

      Tensor yg = test::poisoned_cuda(ctx, {n}), dxg = test::poisoned_cuda(ctx, {n});
      dropout_forward(ctx, xg, p, seed, yg);
      dropout_backward(ctx, dyg, p, seed, dxg);
      Tensor y_back = test::to_host(ctx, yg), dx_back = test::to_host(ctx, dxg);
      CHECK(test::bit_identical(y_back, y_cpu));
      CHECK(test::bit_identical(dx_back, dx_cpu));
      // Forward and backward share the seed's mask.
      CHECK(count_zeros(y_back) == count_zeros(dx_back));
      if (p == 0.0) CHECK(count_zeros(y_back) == 0);
      if (n > 1000000) CHECK(std::abs(double(count_zeros(y_back)) / double(n) - p) < 0.01);
    }
  }
}

CUDA_TEST_CASE("dropout on CUDA: in place and on unaligned views (the scalar path) match the CPU twin") {
  Context ctx({.device = Device::CUDA});
  Rng rng(29);
  const double p = 0.3;
  for (int64_t n : {int64_t(1), int64_t(1023), int64_t(8 * 1024 * 1024 + 3)}) {
    CAPTURE(n);
    const uint64_t seed = rng.next_u64();
    // One extra element in front: the views start 4 bytes into their storage, so no float4 path.
    Tensor x_full = test::random_away_from_zero(rng, {n + 1}, DType::F32);
    Tensor x = x_full.slice(1, n + 1);
    Tensor y_cpu = Tensor::empty({n});
    dropout_forward(ctx, x, p, seed, y_cpu);

    Tensor xg = test::to_cuda(ctx, x_full).slice(1, n + 1);
    Tensor yg = test::poisoned_cuda(ctx, {n + 1}).slice(1, n + 1);
    dropout_forward(ctx, xg, p, seed, yg);
    CHECK(test::bit_identical(test::to_host(ctx, yg), y_cpu));
    Tensor dxg = test::poisoned_cuda(ctx, {n + 1}).slice(1, n + 1);
    dropout_backward(ctx, xg, p, seed, dxg);
    CHECK(test::bit_identical(test::to_host(ctx, dxg), y_cpu));

    // y aliasing x, aligned (float4 path).
    Tensor in_place = test::to_cuda(ctx, x.clone());
    dropout_forward(ctx, in_place, p, seed, in_place);
    CHECK(test::bit_identical(test::to_host(ctx, in_place), y_cpu));
  }
}

CUDA_TEST_CASE("dropout on CUDA refuses F64 with the op's name") {
  Context ctx({.device = Device::CUDA});
  Tensor x = Tensor::zeros(ctx, {4}, DType::F64, Device::CUDA);
  Tensor y = Tensor::zeros(ctx, {4}, DType::F64, Device::CUDA);
  CHECK_THROWS_WITH(dropout_forward(ctx, x, 0.5, 1, y),
                    "dropout_forward: CUDA kernel needs an F32 CUDA tensor, got F64[4] cuda");
}
