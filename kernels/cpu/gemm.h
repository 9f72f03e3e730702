#pragma once
// Row-major GEMM for the CPU reference: C = alpha * op(A) * op(B) + beta * C, with op(A) M x K and
// op(B) K x N. OpenBLAS when built with it (TL_HAVE_OPENBLAS), else a blocked loop of our own.
#include <cstdint>

namespace tl {
class Context;
namespace cpu {

// One thread, for callers that already parallelise (over the batch).
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                 const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Rows of C split across the context's threads.
template <class T>
void gemm(Context& ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// OpenBLAS runs single-threaded inside our own OpenMP parallelism; the Context calls this once.
void gemm_prepare_threads();

}  // namespace cpu
}  // namespace tl
