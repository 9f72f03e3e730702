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

inline Tensor f64(const Tensor& t) { return t.to_dtype(DType::F64); }

inline double rms(const Tensor& t) {
  double sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) sum += t.item(i) * t.item(i);
  return std::sqrt(sum / static_cast<double>(t.numel()));
}

// Random F32 values on the scale of `like` (an accumulator's starting value: an overwrite instead of += shows).
inline Tensor random_on_scale_of(Rng& rng, const Tensor& like) {
  double s = rms(like);
  return random_tensor(rng, like.shape(), DType::F32, -s, s);
}

// a + b elementwise, in double (the accumulated reference).
inline Tensor sum_f64(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty(a.shape(), DType::F64);
  for (int64_t i = 0; i < a.numel(); ++i) out.data<double>()[i] = a.item(i) + b.item(i);
  return out;
}

}  // namespace tl::test
