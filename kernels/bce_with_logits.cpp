#include "kernels/bce_with_logits.h"

namespace tl {

double bce_with_logits(Context& ctx, const Tensor& logits, const Tensor& targets, Tensor* dlogits) {
  const char* op = "bce_with_logits";
  bool column = logits.dim() == 1 || (logits.dim() == 2 && logits.size(1) == 1);
  TL_CHECK(column && logits.numel() > 0, op, ": logits must be [N] or [N,1] with N >= 1, got ",
           shape_str(logits.shape()));
  TL_CHECK(logits.dtype() == DType::F32 || logits.dtype() == DType::F64, op, ": logits must be F32 or F64, got ",
           logits.describe());
  TL_CHECK(targets.numel() == logits.numel(), op, ": targets ", shape_str(targets.shape()),
           " must have as many elements as logits ", shape_str(logits.shape()));
  check_same_device_dtype(op, logits, targets);
  // On the CPU, before anything is written. Serial, so the first bad target is the one reported
  // whatever the thread count. (The CUDA twin checks on the device: reading here would cost a copy.)
  if (!logits.is_cuda()) {
    for (int64_t i = 0; i < targets.numel(); ++i) {
      double t = targets.item(i);
      TL_CHECK(t >= 0 && t <= 1, op, ": target ", t, " at index ", i, " is outside [0, 1]");
    }
  }
  if (dlogits) {
    if (!dlogits->defined()) {
      *dlogits = Tensor::empty_like(ctx, logits);
    } else {
      check_same_shape(op, logits, *dlogits);
      check_same_device_dtype(op, logits, *dlogits);
    }
  }
  if (logits.is_cuda()) return cuda::bce_with_logits(ctx, logits, targets, dlogits);
  return cpu::bce_with_logits(ctx, logits, targets, dlogits);
}

}  // namespace tl
