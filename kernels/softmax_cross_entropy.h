#pragma once
// Softmax cross-entropy, fused and numerically stable, with label smoothing. Entry points validate
// and dispatch; the cpu:: twin is the specification (no CUDA twin yet).
#include "engine/tensor.h"

namespace tl {
class Context;

// logits [N,C] (F32/F64), labels I64 [N] with every value in [0,C) (an error names the bad label
// and its index otherwise). Label smoothing s in [0,1]: target = (1-s)*onehot + s/C.
// Returns the MEAN loss over the batch, computed as a max-subtracted log-sum-exp in double.
// When dlogits is non-null it is overwritten with d(mean loss)/d(logits) = (softmax - target)/N;
// an undefined *dlogits is allocated like logits, a defined one must match logits exactly.
double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits);
// Row-wise softmax of logits [N,C], stable (max-subtracted). probabilities: same shape, dtype and
// device as logits (allocated when undefined); overwritten.
void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities);

namespace cpu {
// Arguments already validated by the entry points above.
double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits);
void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities);
}  // namespace cpu
}  // namespace tl
