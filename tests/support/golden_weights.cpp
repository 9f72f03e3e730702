#include "support/golden_weights.h"

#include <cmath>

#include "engine/error.h"
#include "engine/rng.h"

namespace tl::test {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

std::vector<StateEntry> state_dict_entries(Model& model) {
  std::vector<StateEntry> out;
  // visit_layers goes parents before children, so a layer's own tensors precede its children's, as in PyTorch.
  model.visit_layers([&](const std::string& path, Layer& layer) {
    for (Parameter* p : layer.local_parameters()) out.push_back({join(path, p->local_name()), &p->value});
    for (Buffer* b : layer.local_buffers()) out.push_back({join(path, b->local_name), &b->value});
  });
  return out;
}

void fill_golden_tensor(const std::string& name, int64_t k, Tensor& value) {
  TL_CHECK(!value.is_cuda(), "fill_golden_tensor: ", name, " must be on the CPU");
  if (ends_with(name, "num_batches_tracked")) {
    value.fill(0.0);
    return;
  }
  TL_CHECK(value.dtype() == DType::F32, "fill_golden_tensor: ", name, " is ", value.describe(), ", expected F32");
  const int64_t n = value.numel();
  const uint64_t seed = static_cast<uint64_t>(1000 + k);
  // The same double expressions as make_golden.py, each with one rounding (2u - 1 and 0.5u are exact), so a fused
  // multiply-add cannot change a value.
  enum class Role { Centered, Variance, Gamma, Kernel } role;
  double bound = 0;
  if (ends_with(name, "running_mean") || ends_with(name, "bias")) {
    role = Role::Centered;
  } else if (ends_with(name, "running_var")) {
    role = Role::Variance;
  } else if (ends_with(name, "weight") && value.dim() == 1) {
    role = Role::Gamma;
  } else if (ends_with(name, "weight") && value.dim() >= 2) {
    role = Role::Kernel;
    bound = std::sqrt(6.0 / static_cast<double>(n / value.size(0)));  // He-uniform over fan_in = numel / out
  } else {
    throw Error(str("fill_golden_tensor: no golden formula for '", name, "'"));
  }
  float* out = value.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    double u = static_cast<double>(hash_u64(seed, static_cast<uint64_t>(i)) >> 40) * (1.0 / 16777216.0);
    double v = 0;
    switch (role) {
      case Role::Centered: v = 0.1 * (2.0 * u - 1.0); break;
      case Role::Variance: v = 0.75 + 0.5 * u; break;
      case Role::Gamma: v = 0.5 + 0.5 * u; break;
      case Role::Kernel: v = bound * (2.0 * u - 1.0); break;
    }
    out[i] = static_cast<float>(v);
  }
}

void fill_golden_weights(Model& model) {
  auto entries = state_dict_entries(model);
  for (size_t k = 0; k < entries.size(); ++k) fill_golden_tensor(entries[k].name, static_cast<int64_t>(k), *entries[k].value);
}

std::array<double, 2> golden_checksum(const Tensor& value) {
  double abs_sum = 0, weighted = 0;
  auto add = [&](int64_t i, double v) {
    abs_sum += std::fabs(v);
    weighted += v * static_cast<double>((i * 2654435761LL) % 1000) / 1000.0;
  };
  if (value.dtype() == DType::F32) {  // read in place: VGG16's classifier.0 alone is 102M values
    const float* data = value.data<float>();
    for (int64_t i = 0; i < value.numel(); ++i) add(i, data[i]);
  } else {
    for (int64_t i = 0; i < value.numel(); ++i) add(i, value.item(i));
  }
  return {abs_sum, weighted};
}

}  // namespace tl::test
