#include "kernels/elementwise.h"

#include <algorithm>

#include "engine/parallel.h"
#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

namespace {
// Runs body(begin, end) over [0, n) in chunks big enough that threading pays for itself.
template <class F>
void for_chunks(Context& ctx, int64_t n, F&& body) {
  const int64_t chunk = 1 << 16;
  parallel_for(ctx, (n + chunk - 1) / chunk, [&](int64_t c) { body(c * chunk, std::min(n, (c + 1) * chunk)); });
}
}  // namespace

void add_forward(Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  dispatch_float("add_forward", a, [&](auto zero) {
    using T = decltype(zero);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* py = y.data<T>();
    for_chunks(ctx, a.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) py[i] = pa[i] + pb[i];
    });
  });
}

void add_into(Context& ctx, Tensor& y, const Tensor& x) {
  dispatch_float("add_into", y, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for_chunks(ctx, y.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) py[i] += px[i];
    });
  });
}

void scale_into(Context& ctx, Tensor& y, double alpha) {
  dispatch_float("scale_into", y, [&](auto zero) {
    using T = decltype(zero);
    const T a = static_cast<T>(alpha);
    T* py = y.data<T>();
    for_chunks(ctx, y.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) py[i] *= a;
    });
  });
}

}  // namespace tl::cpu
