#include "kernels/dropout.h"

#include <algorithm>

#include "engine/parallel.h"
#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

namespace {
// Forward and backward are the same map: out = in * mask * scale.
void apply_mask(Context& ctx, const char* op, const Tensor& in, double p, uint64_t seed, Tensor& out) {
  dispatch_float(op, in, [&](auto zero) {
    using T = decltype(zero);
    const T* src = in.data<T>();
    T* dst = out.data<T>();
    const T scale = static_cast<T>(1.0 / (1.0 - p));
    const int64_t n = in.numel();
    const int64_t chunk = 1 << 16;  // large enough that a thread's start-up is negligible
    parallel_for(ctx, (n + chunk - 1) / chunk, [&](int64_t c) {
      for (int64_t i = c * chunk; i < std::min(n, (c + 1) * chunk); ++i)
        dst[i] = dropout_keeps(seed, static_cast<uint64_t>(i), p) ? src[i] * scale : T(0);
    });
  });
}
}  // namespace

void dropout_forward(Context& ctx, const Tensor& x, double p, uint64_t seed, Tensor& y) {
  apply_mask(ctx, "dropout_forward", x, p, seed, y);
}

void dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t seed, Tensor& dx) {
  apply_mask(ctx, "dropout_backward", dy, p, seed, dx);
}

}  // namespace tl::cpu
