#include "kernels/softmax_cross_entropy.h"

#include "engine/error.h"

namespace tl {

namespace {

void check_logits(const char* op, const Tensor& logits) {
  TL_CHECK(logits.dim() == 2 && logits.size(0) > 0 && logits.size(1) > 0, op,
           ": logits must be [N,C] with N,C >= 1, got ", shape_str(logits.shape()));
  TL_CHECK(logits.dtype() == DType::F32 || logits.dtype() == DType::F64, op, ": logits must be F32 or F64, got ",
           logits.describe());
}

// An undefined output is allocated like `like`; a defined one must match it exactly.
void prepare_output(Context& ctx, const char* op, const Tensor& like, Tensor& out) {
  if (!out.defined()) {
    out = Tensor::empty_like(ctx, like);
    return;
  }
  check_same_shape(op, like, out);
  check_same_device_dtype(op, like, out);
}

}  // namespace

double softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels, double label_smoothing,
                             Tensor* dlogits) {
  const char* op = "softmax_cross_entropy";
  check_logits(op, logits);
  TL_CHECK(labels.dtype() == DType::I64 && labels.dim() == 1 && labels.size(0) == logits.size(0), op,
           ": labels must be I64 [", logits.size(0), "] to match logits ", shape_str(logits.shape()), ", got ",
           labels.describe());
  TL_CHECK(label_smoothing >= 0 && label_smoothing <= 1, op, ": label_smoothing must be in [0,1], got ",
           label_smoothing);
  TL_CHECK(labels.device() == logits.device(), op, ": labels must be on the device of logits ", logits.describe(),
           ", got ", labels.describe());
  if (logits.is_cuda()) {
    if (dlogits) prepare_output(ctx, op, logits, *dlogits);
    return cuda::softmax_cross_entropy(ctx, logits, labels, label_smoothing, dlogits);  // checks the labels
  }
  // Checked here, serially, so the first bad label is the one reported whatever the thread count.
  const int64_t* y = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) check_label(y[i], i, logits);
  if (dlogits) prepare_output(ctx, op, logits, *dlogits);
  return cpu::softmax_cross_entropy(ctx, logits, labels, label_smoothing, dlogits);
}

void softmax(Context& ctx, const Tensor& logits, Tensor& probabilities) {
  check_logits("softmax", logits);
  prepare_output(ctx, "softmax", logits, probabilities);
  if (logits.is_cuda()) return cuda::softmax(ctx, logits, probabilities);
  cpu::softmax(ctx, logits, probabilities);
}

void check_label(int64_t label, int64_t index, const Tensor& logits) {
  const int64_t classes = logits.size(1);
  TL_CHECK(label >= 0 && label < classes, "softmax_cross_entropy: label ", label, " at index ", index,
           " is outside [0, ", classes, ") for logits ", shape_str(logits.shape()));
}

}  // namespace tl
