#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/softmax_cross_entropy.h"
#include "support/test_util.h"

using namespace tl;
using test::labels_of;
using test::random_labels;

// Tolerances. The loss: both twins do the row math in double from the same float logits; they differ
// only in summation order and in the device's double exp/log (<= 1 ulp), so they agree to ~1e-13
// relative. 1e-6 relative is the bound, plus an absolute C * 2^-52: the log-sum-exp is the log of a
// sum >= 1 (the peak's term is exactly 1), and each addition at that scale rounds by up to 2^-53 in
// either twin, so a row whose loss is ~1e-12 (a confident right answer) can differ by that much in
// absolute terms. A kernel accumulating in float fails this (see the small-loss case below).
// dlogits and probabilities: rounded once from double to float on both sides: 1e-5 relative L2.

namespace {


bool loss_close(double device, double host, int64_t classes) {
  return std::abs(device - host) <= 1e-6 * std::abs(host) + double(classes) * 0x1p-52;
}

using cuda::RowMapping;
constexpr RowMapping kMappings[] = {RowMapping::Automatic, RowMapping::WarpPerRow, RowMapping::BlockPerRow};

}  // namespace

CUDA_TEST_CASE("softmax cross-entropy on CUDA matches the CPU twin: loss, dlogits, both row mappings") {
  Context ctx({.device = Device::CUDA});
  Rng rng(41);
  for (int64_t rows : {int64_t(1), int64_t(3), int64_t(128)}) {
    for (int64_t classes : {int64_t(1), int64_t(2), int64_t(10), int64_t(1000), int64_t(1003)}) {
      // Large logits: without the max subtraction exp overflows float (and loses everything).
      Tensor logits = test::random_tensor(rng, {rows, classes}, DType::F32, -80, 80);
      Tensor labels = random_labels(rng, rows, classes);
      Tensor logits_g = test::to_cuda(ctx, logits), labels_g = test::to_cuda(ctx, labels);
      for (double smoothing : {0.0, 0.1}) {
        CAPTURE(rows);
        CAPTURE(classes);
        CAPTURE(smoothing);
        Tensor dlogits_cpu = Tensor::empty({rows, classes});
        const double loss_cpu = softmax_cross_entropy(ctx, logits, labels, smoothing, &dlogits_cpu);

        for (RowMapping mapping : kMappings) {
          CAPTURE(int(mapping));
          Tensor dlogits_g = test::poisoned_cuda(ctx, {rows, classes});
          const double loss_g =
              mapping == RowMapping::Automatic
                  ? softmax_cross_entropy(ctx, logits_g, labels_g, smoothing, &dlogits_g)  // the dispatcher
                  : cuda::softmax_cross_entropy(ctx, logits_g, labels_g, smoothing, &dlogits_g, mapping);
          CHECK(loss_close(loss_g, loss_cpu, classes));
          CHECK(test::cuda_vs_cpu_error(ctx, dlogits_g, dlogits_cpu) <= 1e-5);
          // Without dlogits: the same kernels in the same order, so the very same loss.
          const double loss_only =
              mapping == RowMapping::Automatic
                  ? softmax_cross_entropy(ctx, logits_g, labels_g, smoothing, nullptr)
                  : cuda::softmax_cross_entropy(ctx, logits_g, labels_g, smoothing, nullptr, mapping);
          CHECK(loss_only == loss_g);
        }
      }
    }
  }
}

CUDA_TEST_CASE("softmax on CUDA matches the CPU twin, both row mappings") {
  Context ctx({.device = Device::CUDA});
  Rng rng(43);
  for (int64_t rows : {int64_t(1), int64_t(3), int64_t(128)}) {
    for (int64_t classes : {int64_t(1), int64_t(2), int64_t(10), int64_t(1000), int64_t(1003)}) {
      CAPTURE(rows);
      CAPTURE(classes);
      Tensor logits = test::random_tensor(rng, {rows, classes}, DType::F32, -80, 80);
      Tensor probabilities_cpu;
      softmax(ctx, logits, probabilities_cpu);
      Tensor logits_g = test::to_cuda(ctx, logits);
      for (RowMapping mapping : kMappings) {
        CAPTURE(int(mapping));
        Tensor probabilities_g = test::poisoned_cuda(ctx, {rows, classes});
        if (mapping == RowMapping::Automatic) softmax(ctx, logits_g, probabilities_g);
        else cuda::softmax(ctx, logits_g, probabilities_g, mapping);
        CHECK(test::cuda_vs_cpu_error(ctx, probabilities_g, probabilities_cpu) <= 1e-5);
      }
      Tensor allocated;  // undefined: the dispatcher allocates it on the logits' device
      softmax(ctx, logits_g, allocated);
      CHECK(allocated.is_cuda());
      CHECK(test::cuda_vs_cpu_error(ctx, allocated, probabilities_cpu) <= 1e-5);
    }
  }
}

CUDA_TEST_CASE("softmax cross-entropy on CUDA: more rows than the grid (grid-stride over rows)") {
  Context ctx({.device = Device::CUDA});
  Rng rng(47);
  // Warp per row: 65536 blocks of 8 rows; block per row: 65536 blocks. Go past both.
  for (auto [rows, mapping] : {std::pair{int64_t(65536 * 8 + 5), RowMapping::WarpPerRow},
                               std::pair{int64_t(65536 + 3), RowMapping::BlockPerRow}}) {
    CAPTURE(rows);
    const int64_t classes = 3;
    Tensor logits = test::random_tensor(rng, {rows, classes}, DType::F32, -10, 10);
    Tensor labels = random_labels(rng, rows, classes);
    Tensor dlogits_cpu = Tensor::empty({rows, classes});
    const double loss_cpu = softmax_cross_entropy(ctx, logits, labels, 0.1, &dlogits_cpu);
    Tensor logits_g = test::to_cuda(ctx, logits), labels_g = test::to_cuda(ctx, labels);
    Tensor dlogits_g = test::poisoned_cuda(ctx, {rows, classes});
    const double loss_g = cuda::softmax_cross_entropy(ctx, logits_g, labels_g, 0.1, &dlogits_g, mapping);
    CHECK(loss_close(loss_g, loss_cpu, classes));
    CHECK(test::cuda_vs_cpu_error(ctx, dlogits_g, dlogits_cpu) <= 1e-5);

    // The first bad label is reported even when a later one is bad too, both past the first grid-stride
    // step of the block mapping (65536 rows) and far past the summary kernel's 256 threads.
    labels.data<int64_t>()[rows - 1] = -7;
    labels.data<int64_t>()[65537] = classes;
    Tensor bad_g = test::to_cuda(ctx, labels);
    const std::string expected =
        tl::str("softmax_cross_entropy: label 3 at index 65537 is outside [0, 3) for logits [", rows, ",3]");
    CHECK_THROWS_WITH(cuda::softmax_cross_entropy(ctx, logits_g, bad_g, 0.1, nullptr, mapping), expected.c_str());
  }
}

CUDA_TEST_CASE("softmax cross-entropy on CUDA keeps a tiny loss (double row math, as the CPU twin)") {
  Context ctx({.device = Device::CUDA});
  // loss = log(1 + e^-20) ~ 2.06e-9: in float, 1 + e^-20 rounds to 1 and the loss to 0.
  Tensor logits = Tensor::from_vector({1, 2}, std::vector<float>{0.0f, 20.0f});
  Tensor labels = labels_of({1});
  const double expected = std::log1p(std::exp(-20.0));
  const double loss_cpu = softmax_cross_entropy(ctx, logits, labels, 0.0, nullptr);
  for (RowMapping mapping : {RowMapping::WarpPerRow, RowMapping::BlockPerRow}) {
    const double loss_g = cuda::softmax_cross_entropy(ctx, test::to_cuda(ctx, logits), test::to_cuda(ctx, labels),
                                                      0.0, nullptr, mapping);
    CHECK(std::abs(loss_g - expected) <= 1e-6 * expected);
    CHECK(std::abs(loss_g - loss_cpu) <= 1e-6 * loss_cpu);
  }
}

CUDA_TEST_CASE("softmax cross-entropy on CUDA: bad labels, devices and dtypes are errors naming them") {
  Context ctx({.device = Device::CUDA});
  Rng rng(53);
  Tensor logits_g = test::to_cuda(ctx, test::random_tensor(rng, {4, 4}, DType::F32, -3, 3));
  auto on_device = [&](const std::vector<int64_t>& values) { return test::to_cuda(ctx, labels_of(values)); };
  Tensor dlogits_g = test::poisoned_cuda(ctx, {4, 4});
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits_g, on_device({0, 4, 1, -1}), 0, &dlogits_g),
                    "softmax_cross_entropy: label 4 at index 1 is outside [0, 4) for logits [4,4]");
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits_g, on_device({0, 1, 2, -1}), 0.1, nullptr),
                    "softmax_cross_entropy: label -1 at index 3 is outside [0, 4) for logits [4,4]");
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits_g, on_device({-2, 1, 2, 3}), 0, nullptr),
                    "softmax_cross_entropy: label -2 at index 0 is outside [0, 4) for logits [4,4]");
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits_g, labels_of({0, 1, 2, 3}), 0, nullptr),
                    "softmax_cross_entropy: labels must be on the device of logits F32[4,4] cuda, got I64[4] cpu");
  Tensor logits_f64 = Tensor::zeros(ctx, {4, 4}, DType::F64, Device::CUDA);
  CHECK_THROWS_WITH(softmax_cross_entropy(ctx, logits_f64, on_device({0, 1, 2, 3}), 0, nullptr),
                    "softmax_cross_entropy: CUDA kernel needs an F32 CUDA tensor, got F64[4,4] cuda");

  // After the errors the context still works, and an undefined dlogits is allocated on the device.
  Tensor dlogits;
  const double loss = softmax_cross_entropy(ctx, logits_g, on_device({3, 2, 1, 0}), 0, &dlogits);
  CHECK(dlogits.is_cuda());
  CHECK(dlogits.shape() == Shape{4, 4});
  Tensor dlogits_cpu;
  const double loss_cpu = softmax_cross_entropy(ctx, test::to_host(ctx, logits_g), labels_of({3, 2, 1, 0}), 0,
                                                &dlogits_cpu);
  CHECK(loss_close(loss, loss_cpu, 4));
  CHECK(test::cuda_vs_cpu_error(ctx, dlogits, dlogits_cpu) <= 1e-5);
}

CUDA_TEST_CASE("softmax cross-entropy and softmax on CUDA in place (output = logits), as the CPU twin allows") {
  Context ctx({.device = Device::CUDA});
  Rng rng(59);
  for (int64_t classes : {int64_t(10), int64_t(1003)}) {
    CAPTURE(classes);
    const int64_t rows = 37;
    Tensor logits = test::random_tensor(rng, {rows, classes}, DType::F32, -8, 8);
    Tensor labels = random_labels(rng, rows, classes);
    Tensor in_place_cpu = logits.clone();
    const double loss_cpu = softmax_cross_entropy(ctx, in_place_cpu, labels, 0.1, &in_place_cpu);
    Tensor probabilities_cpu;
    softmax(ctx, logits, probabilities_cpu);
    for (RowMapping mapping : {RowMapping::WarpPerRow, RowMapping::BlockPerRow}) {
      CAPTURE(int(mapping));
      // The loss reads the labelled logit: it must do so before any thread overwrites the row.
      Tensor in_place = test::to_cuda(ctx, logits);
      const double loss_g =
          cuda::softmax_cross_entropy(ctx, in_place, test::to_cuda(ctx, labels), 0.1, &in_place, mapping);
      CHECK(loss_close(loss_g, loss_cpu, classes));
      CHECK(test::cuda_vs_cpu_error(ctx, in_place, in_place_cpu) <= 1e-5);
      Tensor probabilities = test::to_cuda(ctx, logits);
      cuda::softmax(ctx, probabilities, probabilities, mapping);
      CHECK(test::cuda_vs_cpu_error(ctx, probabilities, probabilities_cpu) <= 1e-5);
    }
  }
}
