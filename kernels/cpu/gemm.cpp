#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <vector>

#include "engine/context.h"
#include "engine/parallel.h"

#ifdef TL_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace tl::cpu {

namespace {

// Fallback: pack op(B) panel-wise so the inner loop runs over contiguous memory.
template <class T>
void gemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                  const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  constexpr int64_t kBlockK = 256, kBlockN = 512;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
  std::vector<T> panel(static_cast<size_t>(kBlockK * kBlockN));
  for (int64_t p0 = 0; p0 < k; p0 += kBlockK) {
    int64_t pk = std::min(kBlockK, k - p0);
    for (int64_t j0 = 0; j0 < n; j0 += kBlockN) {
      int64_t nj = std::min(kBlockN, n - j0);
      for (int64_t p = 0; p < pk; ++p)
        for (int64_t j = 0; j < nj; ++j)
          panel[p * nj + j] = trans_b ? b[(j0 + j) * ldb + p0 + p] : b[(p0 + p) * ldb + j0 + j];
      for (int64_t i = 0; i < m; ++i) {
        T* crow = c + i * ldc + j0;
        for (int64_t p = 0; p < pk; ++p) {
          T av = alpha * (trans_a ? a[(p0 + p) * lda + i] : a[i * lda + p0 + p]);
          const T* brow = &panel[p * nj];
          for (int64_t j = 0; j < nj; ++j) crow[j] += av * brow[j];
        }
      }
    }
  }
}

}  // namespace

void gemm_prepare_threads() {
#ifdef TL_HAVE_OPENBLAS
  openblas_set_num_threads(1);
#endif
}

template <>
void gemm_serial<float>(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef TL_HAVE_OPENBLAS
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m),
              int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
#else
  gemm_blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

template <>
void gemm_serial<double>(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                         int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef TL_HAVE_OPENBLAS
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m),
              int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
#else
  gemm_blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

template <class T>
void gemm(Context& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  int64_t chunks = std::min<int64_t>(ctx.threads(), std::max<int64_t>(1, m / 16));
  if (chunks <= 1) return gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  int64_t rows = (m + chunks - 1) / chunks;
  parallel_for(ctx, chunks, [&](int64_t chunk) {
    int64_t r0 = chunk * rows, r1 = std::min(m, r0 + rows);
    if (r0 >= r1) return;
    const T* a_rows = trans_a ? a + r0 : a + r0 * lda;
    gemm_serial(trans_a, trans_b, r1 - r0, n, k, alpha, a_rows, lda, b, ldb, beta, c + r0 * ldc, ldc);
  });
}

template void gemm<float>(Context&, bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(Context&, bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace tl::cpu
