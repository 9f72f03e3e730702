#pragma once
// Inverted dropout with a stateless mask: element i of a tensor is kept iff
// uniform_from_hash(hash_u64(seed, i)) >= p, and kept values are scaled by 1/(1-p). The mask is a pure
// function of (seed, i), so backward redraws it from the seed instead of storing it, and a CUDA twin
// calling dropout_keeps() draws exactly the same mask.
#include <cstdint>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace tl {
class Context;

// The comparison is made in double, so it does not depend on how p would round to float.
TL_HOST_DEVICE inline bool dropout_keeps(uint64_t seed, uint64_t index, double p) {
  return static_cast<double>(uniform_from_hash(hash_u64(seed, index))) >= p;
}

// p in [0, 1). y (same shape, dtype and device as x; may alias x) is overwritten with x * mask / (1-p);
// the scale 1/(1-p) is computed in double and rounded once to the tensor's type.
void dropout_forward(Context& ctx, const Tensor& x, double p, uint64_t seed, Tensor& y);
// dx = dy * mask / (1-p) with the same seed's mask; dx overwritten.
void dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t seed, Tensor& dx);

// Throws naming `who` unless p is in [0, 1).
void check_dropout_probability(const char* who, double p);

namespace cpu {
void dropout_forward(Context& ctx, const Tensor& x, double p, uint64_t seed, Tensor& y);
void dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t seed, Tensor& dx);
}  // namespace cpu
namespace cuda {
// F32 only; the same mask bit for bit as the cpu:: twin (same seed, same element index).
void dropout_forward(Context& ctx, const Tensor& x, double p, uint64_t seed, Tensor& y);
void dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t seed, Tensor& dx);
}  // namespace cuda
}  // namespace tl
