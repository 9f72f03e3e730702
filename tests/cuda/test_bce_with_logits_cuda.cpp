// Binary cross-entropy with logits on CUDA against the CPU twin: loss, gradient (poisoned before
// the call), the device-side target check and its message, for [N] and [N,1].
#include <cmath>
#include <limits>
#include <string>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/bce_with_logits.h"
#include "support/test_util.h"

using namespace tl;

namespace {

// Logits U(-8, 8); targets: hard 0/1 labels on even rows, soft U(0, 1) on odd ones.
void make_inputs(Rng& rng, const Shape& shape, Tensor& logits, Tensor& targets) {
  logits = test::random_tensor(rng, shape, DType::F32, -8, 8);
  targets = test::random_tensor(rng, shape, DType::F32, 0, 1);
  float* t = targets.data<float>();
  for (int64_t i = 0; i < targets.numel(); i += 2) t[i] = t[i] < 0.5f ? 0.0f : 1.0f;
}

// The CPU twin's error message for these inputs ("" when it accepts them).
std::string cpu_error(Context& ctx, const Tensor& logits, const Tensor& targets) {
  try {
    bce_with_logits(ctx, logits, targets, nullptr);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Both twins accumulate the loss in double; only the order of the sum differs (~1e-16 relative).
void check_loss(double device, double cpu) {
  CHECK(std::isfinite(device));
  CHECK(std::fabs(device - cpu) <= 1e-5 * std::fabs(cpu));
}

}  // namespace

CUDA_TEST_CASE("bce with logits on CUDA matches the CPU twin: loss and poisoned gradient") {
  Context ctx({.device = Device::CUDA});
  Rng rng(31);
  // 1, 3, 1000: one block; 2^20+7: 1024 blocks with grid-stride rounds, then the one-block mean.
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(1000), int64_t((1 << 20) + 7)}) {
    for (bool column : {false, true}) {
      Shape shape = column ? Shape{n, 1} : Shape{n};
      CAPTURE(n);
      CAPTURE(column);
      Tensor logits, targets;
      make_inputs(rng, shape, logits, targets);
      Tensor dlogits_cpu;
      double loss_cpu = bce_with_logits(ctx, logits, targets, &dlogits_cpu);

      Tensor logits_d = test::to_cuda(ctx, logits), targets_d = test::to_cuda(ctx, targets);
      Tensor dlogits_d = test::poisoned_cuda(ctx, shape);
      check_loss(bce_with_logits(ctx, logits_d, targets_d, &dlogits_d), loss_cpu);
      CHECK(test::cuda_vs_cpu_error(ctx, dlogits_d, dlogits_cpu) <= 1e-5);

      // Without a gradient, and with one allocated by the call (on the device).
      check_loss(bce_with_logits(ctx, logits_d, targets_d, nullptr), loss_cpu);
      Tensor allocated;
      check_loss(bce_with_logits(ctx, logits_d, targets_d, &allocated), loss_cpu);
      CHECK(allocated.is_cuda());
      CHECK(allocated.shape() == shape);
      CHECK(test::cuda_vs_cpu_error(ctx, allocated, dlogits_cpu) <= 1e-5);
    }
  }
}

CUDA_TEST_CASE("bce with logits on CUDA at |z| = 1e4 is finite and equals the CPU twin") {
  Context ctx({.device = Device::CUDA});
  Tensor logits = Tensor::from_vector({4}, std::vector<float>{1e4f, -1e4f, 1e4f, -1e4f});
  Tensor targets = Tensor::from_vector({4}, std::vector<float>{1, 0, 0, 0.25f});
  Tensor dlogits_cpu;
  double loss_cpu = bce_with_logits(ctx, logits, targets, &dlogits_cpu);
  Tensor dlogits_d = test::poisoned_cuda(ctx, {4});
  check_loss(bce_with_logits(ctx, test::to_cuda(ctx, logits), test::to_cuda(ctx, targets), &dlogits_d), loss_cpu);
  CHECK(test::cuda_vs_cpu_error(ctx, dlogits_d, dlogits_cpu) <= 1e-5);
}

CUDA_TEST_CASE("bce with logits on CUDA names the first bad target and its index, as the CPU does") {
  Context ctx({.device = Device::CUDA});
  Rng rng(32);
  int64_t n = (1 << 20) + 7;
  Tensor logits, targets;
  make_inputs(rng, {n}, logits, targets);
  // Two bad targets far apart (different blocks and grid-stride rounds): the lower index is named.
  targets.data<float>()[900001] = 1.5f;
  targets.data<float>()[300003] = -0.25f;
  std::string expected = cpu_error(ctx, logits, targets);
  REQUIRE(expected == "bce_with_logits: target -0.25 at index 300003 is outside [0, 1]");
  Tensor dlogits_d;
  CHECK_THROWS_WITH(bce_with_logits(ctx, test::to_cuda(ctx, logits), test::to_cuda(ctx, targets), &dlogits_d),
                    expected.c_str());

  // NaN is not in [0, 1] either.
  Tensor small = Tensor::from_vector({3}, std::vector<float>{0, 1, 0.5f});
  small.data<float>()[2] = std::numeric_limits<float>::quiet_NaN();
  Tensor small_logits = Tensor::from_vector({3}, std::vector<float>{0.1f, -0.2f, 0.3f});
  expected = cpu_error(ctx, small_logits, small);
  REQUIRE(expected.find("at index 2 is outside [0, 1]") != std::string::npos);
  CHECK_THROWS_WITH(bce_with_logits(ctx, test::to_cuda(ctx, small_logits), test::to_cuda(ctx, small), nullptr),
                    expected.c_str());

  // The stream is still usable after the error: a good call right after gives the CPU's loss.
  targets.data<float>()[900001] = 1.0f;
  targets.data<float>()[300003] = 0.0f;
  double loss_cpu = bce_with_logits(ctx, logits, targets, nullptr);
  check_loss(bce_with_logits(ctx, test::to_cuda(ctx, logits), test::to_cuda(ctx, targets), nullptr), loss_cpu);
}
