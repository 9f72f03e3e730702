#pragma once
// Top-1 predictions and how many of them are right: what evaluation needs from the logits without
// copying them to the host. Entry points validate and dispatch; the cpu:: twin is the specification.
#include <cstdint>

#include "engine/tensor.h"

namespace tl {
class Context;

// indices[i] = argmax over j of logits[i, j], for logits [N,C] (F32/F64, N,C >= 1). Ties go to the
// first maximum (lowest index), as torch.argmax does. NaN counts as larger than every number (as in
// torch.argmax and torch.max), so a row holding a NaN answers the index of its first NaN. indices:
// I64 [N] on the device of logits, overwritten; an undefined one is allocated.
void argmax_rows(Context& ctx, const Tensor& logits, Tensor& indices);
// How many rows' argmax (as above) equals their label; labels I64 [N] on the device of logits, each in
// [0,C) (an error names the first bad label and its index; on CUDA the check runs on the device and is
// reported after the one sync that fetches the count). Returns a host value.
int64_t count_correct(Context& ctx, const Tensor& logits, const Tensor& labels);

namespace cpu {
// Arguments already validated by the entry points above (labels included).
void argmax_rows(Context& ctx, const Tensor& logits, Tensor& indices);
int64_t count_correct(Context& ctx, const Tensor& logits, const Tensor& labels);
}  // namespace cpu
namespace cuda {
// F32 only. count_correct checks the labels itself.
void argmax_rows(Context& ctx, const Tensor& logits, Tensor& indices);
int64_t count_correct(Context& ctx, const Tensor& logits, const Tensor& labels);
}  // namespace cuda
}  // namespace tl
