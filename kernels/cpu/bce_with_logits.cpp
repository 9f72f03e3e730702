#include "kernels/bce_with_logits.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

// Serial: N is a batch of scalars, far too little work to split, and a serial sum is deterministic.
double bce_with_logits(Context&, const Tensor& logits, const Tensor& targets, Tensor* dlogits) {
  int64_t n = logits.numel();
  double total = 0;
  dispatch_float("bce_with_logits", logits, [&](auto zero) {
    using T = decltype(zero);
    const T* z = logits.data<T>();
    const T* t = targets.data<T>();
    T* dz = dlogits ? dlogits->data<T>() : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      double zi = z[i], ti = t[i];
      // log(1 + exp(-|z|)) never overflows; log1p keeps it accurate when exp(-|z|) is tiny.
      double e = std::exp(-std::fabs(zi));
      total += std::max(zi, 0.0) - zi * ti + std::log1p(e);
      if (dz) {
        // sigmoid(z) from exp(-|z|) only: 1/(1+e) for z >= 0, e/(1+e) for z < 0.
        double sigmoid = zi >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        dz[i] = T((sigmoid - ti) / double(n));
      }
    }
  });
  return total / double(n);
}

}  // namespace tl::cpu
