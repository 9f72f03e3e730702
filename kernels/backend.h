#pragma once
// Guards for dispatchers whose CUDA twin does not exist yet: a clear error, never a silent fallback.
#include "engine/error.h"
#include "engine/tensor.h"

namespace tl {

inline void require_cpu(const char* op, const Tensor& t) {
  TL_CHECK(!t.is_cuda(), op, ": no CUDA kernel yet for ", t.describe(), " (run with --device cpu)");
}

}  // namespace tl
