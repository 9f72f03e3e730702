// add_forward, add_into and scale_into on CUDA against the CPU twin. Each element is one IEEE float add
// or multiply on both sides, so results are compared bit for bit (which implies the DESIGN.md 1e-5).
// Sizes: 1 and 3 (tail only), 1023, and 8M + 17 (float4 body plus a tail of 1); views that start one
// float into their buffer take the scalar kernels.
#include <cstdint>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/elementwise.h"
#include "support/test_util.h"

using namespace tl;

namespace {

// Where each operand starts in its device buffer, in floats (1: not 16-byte aligned).
struct Shifts {
  int64_t a, b, y;
};

const std::vector<int64_t> kSizes = {1, 3, 1023, 8 * 1024 * 1024 + 17};

// A device copy of `host` that starts `shift` floats into a bigger buffer (shift 1: not 16-byte aligned).
Tensor device_copy(Context& ctx, const Tensor& host, int64_t shift) {
  const int64_t n = host.numel();
  Tensor buffer = test::poisoned_cuda(ctx, {n + shift});
  Tensor view = buffer.slice(shift, n + shift).reshape(host.shape());
  view.copy_from(ctx, host);
  return view;
}

bool same_bits(Context& ctx, const Tensor& device_result, const Tensor& cpu_result) {
  Tensor host = test::to_host(ctx, device_result);
  return test::fully_written(host) && test::bit_identical(host, cpu_result);
}

}  // namespace

CUDA_TEST_CASE("add_forward on CUDA equals the CPU twin bit for bit, aligned or not, in place or not") {
  Context ctx({.device = Device::CUDA});
  Rng rng(31);
  for (int64_t n : kSizes) {
    Tensor a = test::random_tensor(rng, {n}, DType::F32), b = test::random_tensor(rng, {n}, DType::F32);
    Tensor sum = Tensor::empty({n});
    add_forward(ctx, a, b, sum);
    // Shifts of a, b and y: all aligned (float4), each one misaligned, all misaligned (scalar).
    for (Shifts s : {Shifts{0, 0, 0}, Shifts{1, 0, 0}, Shifts{0, 1, 0}, Shifts{0, 0, 1}, Shifts{1, 1, 1}}) {
      INFO("n ", n, " shifts ", s.a, " ", s.b, " ", s.y);
      Tensor ag = device_copy(ctx, a, s.a), bg = device_copy(ctx, b, s.b);
      Tensor y = test::poisoned_cuda(ctx, {n + s.y}).slice(s.y, n + s.y);
      add_forward(ctx, ag, bg, y);
      CHECK(same_bits(ctx, y, sum));
    }
    INFO("n ", n, " in place");
    Tensor ag = test::to_cuda(ctx, a), bg = test::to_cuda(ctx, b);
    add_forward(ctx, ag, bg, ag);  // y may be a
    CHECK(same_bits(ctx, ag, sum));
    Tensor bg2 = test::to_cuda(ctx, b), ag2 = test::to_cuda(ctx, a);
    add_forward(ctx, ag2, bg2, bg2);  // or b
    CHECK(same_bits(ctx, bg2, sum));
  }
}

CUDA_TEST_CASE("add_into and scale_into on CUDA equal the CPU twin bit for bit") {
  Context ctx({.device = Device::CUDA});
  Rng rng(37);
  for (int64_t n : kSizes) {
    Tensor y = test::random_tensor(rng, {n}, DType::F32), x = test::random_tensor(rng, {n}, DType::F32);
    Tensor accumulated = y.clone();
    add_into(ctx, accumulated, x);
    Tensor scaled = y.clone();
    scale_into(ctx, scaled, 0.3);  // 0.3 is not a float: both sides round alpha to float first
    for (int64_t shift : {0, 1}) {
      INFO("n ", n, " shift ", shift);
      Tensor yg = device_copy(ctx, y, shift);
      add_into(ctx, yg, device_copy(ctx, x, 1 - shift));  // one operand aligned, the other not
      CHECK(same_bits(ctx, yg, accumulated));
      Tensor sg = device_copy(ctx, y, shift);
      scale_into(ctx, sg, 0.3);
      CHECK(same_bits(ctx, sg, scaled));
    }
    Tensor both_aligned = test::to_cuda(ctx, y);
    add_into(ctx, both_aligned, test::to_cuda(ctx, x));
    CHECK(same_bits(ctx, both_aligned, accumulated));
  }
}

CUDA_TEST_CASE("elementwise ops on CUDA reject mismatched devices and accept empty tensors") {
  Context ctx({.device = Device::CUDA});
  Tensor a = test::to_cuda(ctx, Tensor::full({4}, 1.0)), host = Tensor::full({4}, 1.0);
  CHECK_THROWS_WITH(add_into(ctx, a, host), doctest::Contains("add_into: tensors differ in device or dtype"));
  Tensor empty = Tensor::empty(ctx, {0}, DType::F32, Device::CUDA);
  CHECK_NOTHROW(add_forward(ctx, empty, empty, empty));
  CHECK_NOTHROW(scale_into(ctx, empty, 2.0));
}
