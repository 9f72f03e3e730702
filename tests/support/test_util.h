#pragma once
// Helpers shared by the tests: fresh random data (never zeros), comparisons, data paths.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace tl::test {

// Uniform in [lo, hi).
Tensor random_tensor(Rng& rng, const Shape& shape, DType dtype = DType::F64, double lo = -1, double hi = 1);
// Uniform magnitude in [min_abs, 1], random sign: keeps inputs away from ReLU's kink at 0.
Tensor random_away_from_zero(Rng& rng, const Shape& shape, DType dtype = DType::F64, double min_abs = 0.1);
// Distinct values, spaced at least `gap` apart in random order: keeps max-pool away from ties.
Tensor random_distinct(Rng& rng, const Shape& shape, DType dtype = DType::F64, double gap = 1e-3);
// ||a - b|| / ||b|| over all elements (CPU tensors of any float dtype).
double relative_l2(const Tensor& a, const Tensor& b);
double max_abs_diff(const Tensor& a, const Tensor& b);
bool bit_identical(const Tensor& a, const Tensor& b);
// The message of the tl::Error that f() throws, or "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// I64 [N] labels from values, and N labels drawn uniformly from [0, classes).
Tensor labels_of(const std::vector<int64_t>& values);
Tensor random_labels(Rng& rng, int64_t n, int64_t classes);
// ../shared/data next to the repository, or "" when absent.
std::string shared_data_dir();
std::string source_dir();

}  // namespace tl::test

namespace tl {
class Layer;
namespace test {
// Converts the parameters and buffers of a layer tree to F64 for gradient checks.
void to_double(Layer& layer);
}  // namespace test
}  // namespace tl
