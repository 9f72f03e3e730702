// ReLU on CUDA against the CPU twin. Both sides evaluate x > 0 ? x : 0 (and y > 0 ? dy : 0) in float,
// so results are compared bit for bit, which implies the DESIGN.md bound of 1e-5. Sizes: 1 and 3 (the
// scalar tail only), 1023, 8M + 17 (float4 body plus a tail); views one float into their buffer take
// the scalar kernels; special values (-0, NaN, infinities) must come out as on the CPU.
#include <cmath>
#include <limits>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/relu.h"
#include "support/test_util.h"

using namespace tl;

namespace {

const std::vector<int64_t> kSizes = {1, 3, 1023, 8 * 1024 * 1024 + 17};

// A device copy of `host` that starts `shift` floats into a NaN-filled buffer.
Tensor device_copy(Context& ctx, const Tensor& host, int64_t shift) {
  const int64_t n = host.numel();
  Tensor view = test::poisoned_cuda(ctx, {n + shift}).slice(shift, n + shift).reshape(host.shape());
  view.copy_from(ctx, host);
  return view;
}

Tensor poisoned_view(Context& ctx, int64_t n, int64_t shift) {
  return test::poisoned_cuda(ctx, {n + shift}).slice(shift, n + shift);
}

bool same_bits(Context& ctx, const Tensor& device_result, const Tensor& cpu_result) {
  Tensor host = test::to_host(ctx, device_result);
  return test::fully_written(host) && test::bit_identical(host, cpu_result);
}

}  // namespace

CUDA_TEST_CASE("relu forward and backward on CUDA match the CPU twin bit for bit, aligned or not") {
  Context ctx({.device = Device::CUDA});
  Rng rng(3);
  for (int64_t n : kSizes) {
    Tensor x = test::random_tensor(rng, {n}, DType::F32);
    Tensor dy = test::random_tensor(rng, {n}, DType::F32);
    Tensor y_cpu = Tensor::empty({n}), dx_cpu = Tensor::empty({n});
    relu_forward(ctx, x, y_cpu);
    relu_backward(ctx, y_cpu, dy, dx_cpu);
    for (int64_t shift : {0, 1}) {
      INFO("n ", n, " shift ", shift);
      Tensor y = poisoned_view(ctx, n, shift);
      relu_forward(ctx, device_copy(ctx, x, shift), y);
      CHECK(same_bits(ctx, y, y_cpu));
      Tensor dx = poisoned_view(ctx, n, shift);
      relu_backward(ctx, device_copy(ctx, y_cpu, 0), device_copy(ctx, dy, shift), dx);  // mixed alignment
      CHECK(same_bits(ctx, dx, dx_cpu));
    }
    // In place: y may be x, dx may be dy.
    Tensor inplace = test::to_cuda(ctx, x);
    relu_forward(ctx, inplace, inplace);
    CHECK(same_bits(ctx, inplace, y_cpu));
    Tensor grad = test::to_cuda(ctx, dy);
    relu_backward(ctx, inplace, grad, grad);
    CHECK(same_bits(ctx, grad, dx_cpu));
  }
}

CUDA_TEST_CASE("relu on CUDA maps -0, NaN and infinities as the CPU twin does") {
  Context ctx({.device = Device::CUDA});
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // Nine values: two float4s and a tail of one.
  Tensor x = Tensor::from_vector({9}, std::vector<float>{-0.0f, 0.0f, nan, inf, -inf, 1e-40f, -1e-40f, 2.5f, -2.5f});
  Tensor y_cpu = Tensor::empty({9});
  relu_forward(ctx, x, y_cpu);
  CHECK(!std::signbit(y_cpu.data<float>()[0]));  // -0 becomes +0
  CHECK(y_cpu.data<float>()[2] == 0.0f);         // NaN becomes 0
  Tensor y = test::poisoned_cuda(ctx, {9});
  relu_forward(ctx, test::to_cuda(ctx, x), y);
  CHECK(same_bits(ctx, y, y_cpu));

  Tensor dy = Tensor::from_vector({9}, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor dx_cpu = Tensor::empty({9});
  relu_backward(ctx, x, dy, dx_cpu);  // x as y: the mask at -0, NaN and denormals
  Tensor dx = test::poisoned_cuda(ctx, {9});
  relu_backward(ctx, test::to_cuda(ctx, x), test::to_cuda(ctx, dy), dx);
  CHECK(same_bits(ctx, dx, dx_cpu));
}
