// CPU fully connected layer: one parallel GEMM per call. cpu::gemm gives each row of its result to
// one thread, so every output element is summed by one thread in a fixed order (deterministic).
#include <algorithm>
#include <memory>
#include <vector>

#include "engine/context.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/gemm.h"
#include "kernels/linear.h"

namespace tl::cpu {

namespace {

// C [m,n] = op(A) op(B), overwritten or accumulated (+=). cpu::gemm splits the rows of C across
// threads in blocks of 16, so when C has few rows (a small batch, or a head with few classes) and
// more columns, compute C^T = op(B)^T op(A)^T into scratch instead and transpose it back: the
// threads then share the long dimension.
constexpr int64_t kRowsPerThread = 16;

template <class T>
void product(Context& ctx, bool accumulate, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a,
             int64_t lda, const T* b, int64_t ldb, T* c) {
  if (m >= kRowsPerThread * ctx.threads() || m >= n) {
    gemm<T>(ctx, trans_a, trans_b, m, n, k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c, n);
    return;
  }
  std::unique_ptr<T[]> transposed(new T[static_cast<size_t>(n * m)]);
  gemm<T>(ctx, !trans_b, !trans_a, n, m, k, T(1), b, ldb, a, lda, T(0), transposed.get(), m);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * n + j] = (accumulate ? c[i * n + j] : T(0)) + transposed[j * m + i];
}

// Column sums of dy in double. Serial: N*out additions are negligible next to the GEMMs, and a
// parallel region would cost more than the work.
template <class T>
void accumulate_bias_gradient(const Tensor& dy, Tensor& dbias) {
  const int64_t batch = dy.size(0), features = dy.size(1);
  const T* g = dy.data<T>();
  T* db = dbias.data<T>();
  std::vector<double> sums(static_cast<size_t>(features), 0.0);
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t j = 0; j < features; ++j) sums[j] += g[n * features + j];
  for (int64_t j = 0; j < features; ++j) db[j] += static_cast<T>(sums[j]);
}

}  // namespace

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  dispatch_float("linear_forward", x, [&](auto zero) {
    using T = decltype(zero);
    const int64_t batch = x.size(0), in = x.size(1), out = w.size(0);
    const T* a = x.data<T>();
    const T* weight = w.data<T>();
    T* result = y.data<T>();
    product<T>(ctx, false, false, true, batch, out, in, a, in, weight, in, result);
    if (bias) {
      const T* b = bias->data<T>();
      for (int64_t n = 0; n < batch; ++n)
        for (int64_t j = 0; j < out; ++j) result[n * out + j] += b[j];
    }
  });
}

void linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx) {
  dispatch_float("linear_backward_data", dy, [&](auto zero) {
    using T = decltype(zero);
    const int64_t batch = dy.size(0), in = w.size(1), out = w.size(0);
    // dx [N,in] = dy [N,out] w [out,in]
    product<T>(ctx, false, false, false, batch, in, out, dy.data<T>(), out, w.data<T>(), in, dx.data<T>());
  });
}

void linear_backward_weight(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias) {
  dispatch_float("linear_backward_weight", x, [&](auto zero) {
    using T = decltype(zero);
    const int64_t batch = x.size(0), in = x.size(1), out = dw.size(0);
    // dw [out,in] += dy^T [out,N] x [N,in]
    product<T>(ctx, true, true, false, out, in, batch, dy.data<T>(), out, x.data<T>(), in, dw.data<T>());
    if (dbias) accumulate_bias_gradient<T>(dy, *dbias);
  });
}

void linear_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias) {
  dispatch_float("linear_backward_bias", dy, [&](auto zero) {
    using T = decltype(zero);
    accumulate_bias_gradient<T>(dy, dbias);
  });
}

}  // namespace tl::cpu
