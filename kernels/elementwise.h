#pragma once
// Elementwise arithmetic for residual blocks and gradient sums. All tensors: same shape, dtype and
// device; an output may be one of the inputs (the same tensor, not a partly overlapping view).
// Arithmetic happens in the tensor's own type (a scalar alpha is rounded to it first), so every
// backend computes bit-identical results.
#include "engine/tensor.h"

namespace tl {
class Context;

void add_forward(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);  // y = a + b (overwritten)
void add_into(Context& ctx, Tensor& y, const Tensor& x);                      // y += x
void scale_into(Context& ctx, Tensor& y, double alpha);                       // y *= alpha

namespace cpu {
void add_forward(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void add_into(Context& ctx, Tensor& y, const Tensor& x);
void scale_into(Context& ctx, Tensor& y, double alpha);
}  // namespace cpu
namespace cuda {
void add_forward(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void add_into(Context& ctx, Tensor& y, const Tensor& x);
void scale_into(Context& ctx, Tensor& y, double alpha);
}  // namespace cuda
}  // namespace tl
