#pragma once
// Helpers shared by the CUDA-vs-CPU parity tests: device tensors poisoned with NaN (so an element a
// kernel forgot to write shows up), round trips to the host, and the relative L2 check.
#include <cmath>
#include <limits>

#include "engine/context.h"
#include "engine/tensor.h"
#include "support/test_util.h"

namespace tl::test {

// A CUDA tensor whose every element is NaN: a kernel that must overwrite it leaves no NaN behind.
inline Tensor poisoned_cuda(Context& ctx, const Shape& shape, DType dtype = DType::F32) {
  Tensor t = Tensor::empty(ctx, shape, dtype, Device::CUDA);
  if (dtype != DType::I64) t.fill(ctx, std::numeric_limits<double>::quiet_NaN());
  else t.fill(ctx, -1.0);
  return t;
}

inline Tensor to_host(Context& ctx, const Tensor& t) { return t.to(ctx, Device::CPU); }
inline Tensor to_cuda(Context& ctx, const Tensor& t) { return t.to(ctx, Device::CUDA); }

// True when no element is NaN (every poisoned element was overwritten with a number).
inline bool fully_written(const Tensor& host) {
  for (double v : host.to_vector())
    if (std::isnan(v)) return false;
  return true;
}

// relative_l2(device result, CPU twin's result), after checking the device result was fully written.
// Returns +inf when an element was left unwritten, so CHECK(err <= tol) fails loudly.
inline double cuda_vs_cpu_error(Context& ctx, const Tensor& device_result, const Tensor& cpu_result) {
  Tensor host = to_host(ctx, device_result);
  if (!fully_written(host)) return std::numeric_limits<double>::infinity();
  return relative_l2(host, cpu_result);
}

}  // namespace tl::test
