#include "kernels/relu.h"

#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

void relu_forward(Context&, const Tensor& x, Tensor& y) {
  dispatch_float("relu_forward", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) out[i] = in[i] > T(0) ? in[i] : T(0);
  });
}

void relu_backward(Context&, const Tensor& y, const Tensor& dy, Tensor& dx) {
  dispatch_float("relu_backward", y, [&](auto zero) {
    using T = decltype(zero);
    const T* out = y.data<T>();
    const T* g = dy.data<T>();
    T* gi = dx.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i) gi[i] = out[i] > T(0) ? g[i] : T(0);
  });
}

}  // namespace tl::cpu
