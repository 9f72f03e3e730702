#pragma once
// CUDA kernels run in float only; the double path is the CPU reference's.
#include "engine/error.h"
#include "engine/tensor.h"

namespace tl::cuda {

inline void check_f32(const char* op, const Tensor& t) {
  TL_CHECK(t.is_cuda() && t.dtype() == DType::F32, op, ": CUDA kernel needs an F32 CUDA tensor, got ",
           t.describe());
}

}  // namespace tl::cuda
