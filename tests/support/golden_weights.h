#pragma once
// The deterministic weight formula of the golden parity tests, the C++ twin of tests/golden/make_golden.py (which
// documents it in full): the k-th state_dict entry, element i, u = uniform_from_hash(hash_u64(1000 + k, i)) in
// [0, 1) with 24 bits; conv/linear weights sqrt(6/fan_in)(2u-1), BatchNorm weights 0.5+0.5u, biases and running
// means 0.1(2u-1), running variances 0.75+0.5u, num_batches_tracked 0. Computed in double, rounded once to float.
#include <array>
#include <string>
#include <vector>

#include "engine/model.h"

namespace tl::test {

// A parameter's or buffer's value under its canonical name.
struct StateEntry {
  std::string name;
  Tensor* value;
};

// PyTorch's state_dict order: each module's own parameters, then its own buffers, then its children's.
std::vector<StateEntry> state_dict_entries(Model& model);

// Overwrites a CPU F32 (or I64 num_batches_tracked) tensor with the formula's values for entry k named `name`.
void fill_golden_tensor(const std::string& name, int64_t k, Tensor& value);
// Every state_dict entry of the model, k counted in state_dict order.
void fill_golden_weights(Model& model);

// {sum |v|, sum v * ((i * 2654435761 mod 1000) / 1000)} in double: make_golden.py's per-tensor checksum, sensitive
// to values, signs and positions.
std::array<double, 2> golden_checksum(const Tensor& value);

}  // namespace tl::test
