// argmax_rows and count_correct on CUDA against the CPU twin: indices compared exactly (poisoned
// before the call), counts equal, on continuous logits and on coarse ones full of ties, NaN and
// infinities; the device-side label check names the same label and index as the CPU.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/accuracy.h"
#include "support/test_util.h"

using namespace tl;

namespace {

// Continuous U(-1, 1) logits, or coarse ones from {-2..2} (most rows have tied maxima) with a NaN in
// every 7th row (two in every 14th), +inf in every 11th and a row of -inf every 13th.
Tensor make_logits(Rng& rng, int64_t rows, int64_t classes, bool coarse) {
  Tensor t = test::random_tensor(rng, {rows, classes}, DType::F32, -1, 1);
  if (!coarse) return t;
  float* z = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) z[i] = float(int64_t(rng.below(5)) - 2);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = z + r * classes;
    if (r % 7 == 3) row[rng.below(uint64_t(classes))] = std::numeric_limits<float>::quiet_NaN();
    if (r % 14 == 3) row[rng.below(uint64_t(classes))] = std::numeric_limits<float>::quiet_NaN();
    if (r % 11 == 5) row[rng.below(uint64_t(classes))] = std::numeric_limits<float>::infinity();
    if (r % 13 == 6)
      for (int64_t c = 0; c < classes; ++c) row[c] = -std::numeric_limits<float>::infinity();
  }
  return t;
}

// Labels that are right on about half the rows (the CPU argmax) and random elsewhere, so the count
// is far from both 0 and N.
Tensor make_labels(Rng& rng, const Tensor& cpu_argmax, int64_t classes) {
  Tensor labels = cpu_argmax.clone();
  int64_t* y = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    if (rng.uniform() < 0.5) y[i] = int64_t(rng.below(uint64_t(classes)));
  return labels;
}

bool same_ints(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return false;
  for (int64_t i = 0; i < a.numel(); ++i)
    if (a.data<int64_t>()[i] != b.data<int64_t>()[i]) return false;
  return true;
}

std::string cpu_error(Context& ctx, const Tensor& logits, const Tensor& labels) {
  try {
    count_correct(ctx, logits, labels);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void check_case(Context& ctx, Rng& rng, int64_t rows, int64_t classes, bool coarse) {
  CAPTURE(rows);
  CAPTURE(classes);
  CAPTURE(coarse);
  Tensor logits = make_logits(rng, rows, classes, coarse);
  Tensor argmax_cpu;
  argmax_rows(ctx, logits, argmax_cpu);
  Tensor labels = make_labels(rng, argmax_cpu, classes);
  int64_t correct_cpu = count_correct(ctx, logits, labels);

  Tensor logits_d = test::to_cuda(ctx, logits);
  Tensor argmax_d = test::poisoned_cuda(ctx, {rows}, DType::I64);  // -1 everywhere
  argmax_rows(ctx, logits_d, argmax_d);
  CHECK(same_ints(test::to_host(ctx, argmax_d), argmax_cpu));
  Tensor allocated;
  argmax_rows(ctx, logits_d, allocated);
  CHECK(allocated.is_cuda());
  CHECK(same_ints(test::to_host(ctx, allocated), argmax_cpu));
  CHECK(count_correct(ctx, logits_d, test::to_cuda(ctx, labels)) == correct_cpu);
}

}  // namespace

CUDA_TEST_CASE("argmax_rows and count_correct on CUDA match the CPU twin exactly") {
  Context ctx({.device = Device::CUDA});
  Rng rng(41);
  for (int64_t rows : {int64_t(1), int64_t(3), int64_t(1000)})
    for (int64_t classes : {int64_t(1), int64_t(2), int64_t(10), int64_t(1000)})
      for (bool coarse : {false, true}) check_case(ctx, rng, rows, classes, coarse);
  // More rows than the grid has warps (65536 blocks x 8): the grid-stride loop over rows.
  check_case(ctx, rng, 600001, 2, true);
}

CUDA_TEST_CASE("count_correct on CUDA names the first bad label and its index, as the CPU does") {
  Context ctx({.device = Device::CUDA});
  Rng rng(42);
  int64_t rows = 600001, classes = 10;
  Tensor logits = make_logits(rng, rows, classes, false);
  Tensor labels = Tensor::zeros({rows}, DType::I64);
  labels.data<int64_t>()[590000] = -3;
  labels.data<int64_t>()[12345] = 10;  // far apart: different blocks and grid-stride rounds
  std::string expected = cpu_error(ctx, logits, labels);
  REQUIRE(expected == "count_correct: label 10 at index 12345 is outside [0, 10) for logits [600001,10]");
  Tensor logits_d = test::to_cuda(ctx, logits);
  CHECK_THROWS_WITH(count_correct(ctx, logits_d, test::to_cuda(ctx, labels)), expected.c_str());
  // The context is still usable after the error.
  labels.data<int64_t>()[590000] = 0;
  labels.data<int64_t>()[12345] = 0;
  CHECK(count_correct(ctx, logits_d, test::to_cuda(ctx, labels)) == count_correct(ctx, logits, labels));
}
