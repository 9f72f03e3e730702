#include "kernels/accuracy.h"

#include "engine/error.h"

namespace tl {

namespace {

void check_logits(const char* op, const Tensor& logits) {
  TL_CHECK(logits.dim() == 2 && logits.size(0) > 0 && logits.size(1) > 0, op,
           ": logits must be [N,C] with N,C >= 1, got ", shape_str(logits.shape()));
  TL_CHECK(logits.dtype() == DType::F32 || logits.dtype() == DType::F64, op, ": logits must be F32 or F64, got ",
           logits.describe());
}

// indices or labels: one I64 per row of logits, on the same device.
void check_per_row(const char* op, const char* what, const Tensor& logits, const Tensor& t) {
  TL_CHECK(t.dtype() == DType::I64 && t.dim() == 1 && t.size(0) == logits.size(0), op, ": ", what,
           " must be I64 [", logits.size(0), "] to match logits ", shape_str(logits.shape()), ", got ",
           t.describe());
  TL_CHECK(t.device() == logits.device(), op, ": ", what, " must be on the device of logits ", logits.describe(),
           ", got ", t.describe());
}

}  // namespace

void argmax_rows(Context& ctx, const Tensor& logits, Tensor& indices) {
  const char* op = "argmax_rows";
  check_logits(op, logits);
  if (!indices.defined()) {
    indices = Tensor::empty(ctx, {logits.size(0)}, DType::I64, logits.device());
  } else {
    check_per_row(op, "indices", logits, indices);
  }
  if (logits.is_cuda()) return cuda::argmax_rows(ctx, logits, indices);
  cpu::argmax_rows(ctx, logits, indices);
}

int64_t count_correct(Context& ctx, const Tensor& logits, const Tensor& labels) {
  const char* op = "count_correct";
  check_logits(op, logits);
  check_per_row(op, "labels", logits, labels);
  if (logits.is_cuda()) return cuda::count_correct(ctx, logits, labels);  // checks the labels on the device
  // Serial, so the first bad label is the one reported.
  const int64_t* y = labels.data<int64_t>();
  int64_t classes = logits.size(1);
  for (int64_t i = 0; i < labels.numel(); ++i)
    TL_CHECK(y[i] >= 0 && y[i] < classes, op, ": label ", y[i], " at index ", i, " is outside [0, ", classes,
             ") for logits ", shape_str(logits.shape()));
  return cpu::count_correct(ctx, logits, labels);
}

}  // namespace tl
