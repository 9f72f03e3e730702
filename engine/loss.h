#pragma once
// Loss functions as the training loop uses them: the mean loss and its gradient with respect to
// the logits in one fused call (see kernels/softmax_cross_entropy.h and kernels/bce_with_logits.h).
#include "engine/tensor.h"

namespace tl {
class Context;

struct LossResult {
  double loss;     // mean over the batch
  Tensor dlogits;  // d(loss)/d(logits), shaped like the logits: feed it to Model::backward
};

// logits [N,C], labels I64 [N]; label_smoothing in [0,1].
LossResult cross_entropy_loss(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing = 0);
// logits [N] or [N,1], targets in [0,1] with the same number of elements.
LossResult bce_with_logits_loss(Context& ctx, const Tensor& logits, const Tensor& targets);

}  // namespace tl
