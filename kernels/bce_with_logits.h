#pragma once
// Binary cross-entropy on logits, in the stable form max(z,0) - z*t + log(1 + exp(-|z|)).
// The entry point validates and dispatches; the cpu:: twin is the specification, the cuda:: twin (F32)
// computes the same in double on the device.
#include "engine/tensor.h"

namespace tl {
class Context;

// logits [N] or [N,1] (F32/F64); targets: same numel, dtype and device, every value in [0,1] (an error
// names the first bad value and its index; on CUDA it is found on the device and reported after the
// sync that fetches the loss, so dlogits has been overwritten by then). Returns the MEAN loss, accumulated in double. When dlogits is
// non-null it is overwritten with (sigmoid(z) - t)/N; an undefined *dlogits is allocated like logits,
// a defined one must match logits exactly.
double bce_with_logits(Context& ctx, const Tensor& logits, const Tensor& targets, Tensor* dlogits);

namespace cpu {
double bce_with_logits(Context& ctx, const Tensor& logits, const Tensor& targets, Tensor* dlogits);
}  // namespace cpu
namespace cuda {
double bce_with_logits(Context& ctx, const Tensor& logits, const Tensor& targets, Tensor* dlogits);
}  // namespace cuda
}  // namespace tl
