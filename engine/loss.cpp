#include "engine/loss.h"

#include "kernels/bce_with_logits.h"
#include "kernels/softmax_cross_entropy.h"

namespace tl {

LossResult cross_entropy_loss(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing) {
  LossResult result;
  result.loss = softmax_cross_entropy(ctx, logits, labels, label_smoothing, &result.dlogits);
  return result;
}

LossResult bce_with_logits_loss(Context& ctx, const Tensor& logits, const Tensor& targets) {
  LossResult result;
  result.loss = bce_with_logits(ctx, logits, targets, &result.dlogits);
  return result;
}

}  // namespace tl
