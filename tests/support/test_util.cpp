#include "support/test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <vector>

namespace tl::test {

namespace {
void set(Tensor& t, int64_t i, double v) {
  if (t.dtype() == DType::F32) t.data<float>()[i] = static_cast<float>(v);
  else t.data<double>()[i] = v;
}
}  // namespace

Tensor random_tensor(Rng& rng, const Shape& shape, DType dtype, double lo, double hi) {
  Tensor t = Tensor::empty(shape, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) set(t, i, lo + (hi - lo) * rng.uniform());
  return t;
}

Tensor random_away_from_zero(Rng& rng, const Shape& shape, DType dtype, double min_abs) {
  Tensor t = Tensor::empty(shape, dtype);
  for (int64_t i = 0; i < t.numel(); ++i) {
    double magnitude = min_abs + (1 - min_abs) * rng.uniform();
    set(t, i, rng.uniform() < 0.5 ? -magnitude : magnitude);
  }
  return t;
}

Tensor random_distinct(Rng& rng, const Shape& shape, DType dtype, double gap) {
  Tensor t = Tensor::empty(shape, dtype);
  std::vector<int64_t> order(static_cast<size_t>(t.numel()));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  double span = gap * static_cast<double>(order.size());
  for (size_t i = 0; i < order.size(); ++i) set(t, order[i], -span / 2 + gap * static_cast<double>(i));
  return t;
}

double relative_l2(const Tensor& a, const Tensor& b) {
  TL_CHECK(a.numel() == b.numel(), "relative_l2: ", a.describe(), " vs ", b.describe());
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double d = a.item(i) - b.item(i);
    num += d * d;
    den += b.item(i) * b.item(i);
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  TL_CHECK(a.numel() == b.numel(), "max_abs_diff: ", a.describe(), " vs ", b.describe());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.item(i) - b.item(i)));
  return m;
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

std::string source_dir() { return TL_SOURCE_DIR; }

std::string shared_data_dir() {
  std::filesystem::path p = std::filesystem::path(TL_SOURCE_DIR) / ".." / "shared" / "data";
  return std::filesystem::exists(p) ? p.lexically_normal().string() : std::string();
}

Tensor labels_of(const std::vector<int64_t>& values) {
  Tensor t = Tensor::empty({static_cast<int64_t>(values.size())}, DType::I64);
  for (size_t i = 0; i < values.size(); ++i) t.data<int64_t>()[i] = values[i];
  return t;
}

Tensor random_labels(Rng& rng, int64_t n, int64_t classes) {
  std::vector<int64_t> values;
  for (int64_t i = 0; i < n; ++i) values.push_back(static_cast<int64_t>(rng.below(static_cast<uint64_t>(classes))));
  return labels_of(values);
}

}  // namespace tl::test

#include "engine/layer.h"

namespace tl::test {

void to_double(Layer& layer) {
  for (Parameter* p : layer.local_parameters()) convert_parameter_dtype(*p, DType::F64);
  for (Buffer* b : layer.local_buffers())
    if (b->value.dtype() != DType::I64) b->value = b->value.to_dtype(DType::F64);
  for (auto& [name, child] : layer.children()) to_double(*child);
}

}  // namespace tl::test
