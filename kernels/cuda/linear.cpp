// CUDA fully connected layer through cuBLAS on the Context's handle (bound to its stream). Strict
// FP32 (CUBLAS_DEFAULT_MATH, no TF32), as PyTorch's default for matmul; ctx.tf32() concerns
// convolutions only.
//
// Row-major <-> column-major: cuBLAS is column-major. A row-major [r,c] matrix with leading
// dimension c is, read column-major, its transpose [c,r] with the same leading dimension. So each
// row-major product C = A B is computed as the column-major product C^T = B^T A^T, with the
// operands swapped and no data moved:
//   forward        y [N,out] = x [N,in] w^T     ->  y^T [out,N] = w [out,in] x^T [in,N]
//                  column-major: w is stored as w^T [in,out] (ld in) -> op T; x^T [in,N] (ld in) -> op N
//                  gemm(T, N, m=out, n=N, k=in, A=w lda=in, B=x ldb=in, C=y ldc=out)
//   backward_data  dx [N,in] = dy [N,out] w [out,in]  ->  dx^T [in,N] = w^T [in,out] dy^T [out,N]
//                  gemm(N, N, m=in, n=N, k=out, A=w lda=in, B=dy ldb=out, C=dx ldc=in)
//   backward_weight dw [out,in] += dy^T [out,N] x [N,in]  ->  dw^T [in,out] += x^T [in,N] dy [N,out]
//                  column-major: dy is stored as dy^T [out,N] (ld out) -> op T
//                  gemm(N, T, m=in, n=out, k=N, A=x lda=in, B=dy ldb=out, beta=1, C=dw ldc=in)
// The bias uses a device vector of ones (kept in the Context's cuDNN/cuBLAS cache):
//   y^T [out,N] += b [out] ones^T [N]    ->  ger(m=out, n=N, x=b, y=ones, A=y lda=out)
//   dbias [out] += dy^T [out,N] ones [N] ->  gemv(N, m=out, n=N, A=dy lda=out, x=ones, beta=1)
#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/conv2d_algorithms.h"
#include "kernels/linear.h"

namespace tl::cuda {

namespace {

const float kOne = 1.0f, kZero = 0.0f;

// The shared handle, set for what these calls assume: host scalars and strict FP32 math (another
// op may have changed either on the same handle).
cublasHandle_t strict_fp32_cublas(Context& ctx) {
  cublasHandle_t handle = ctx.cuda().cublas();
  TL_CUDA_CHECK(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST));
  TL_CUDA_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
  return handle;
}

// dbias += column sums of dy [batch, out].
void add_column_sums(Context& ctx, cublasHandle_t handle, const char* op, const Tensor& dy, Tensor& dbias) {
  const int batch = checked_int(dy.size(0), op, dy), out = checked_int(dy.size(1), op, dy);
  const float* ones = cudnn_algorithm_cache(ctx).ones(ctx, batch);
  TL_CUDA_CHECK(cublasSgemv(handle, CUBLAS_OP_N, out, batch, &kOne, dy.data<float>(), out, ones, 1, &kOne,
                            dbias.data<float>(), 1));
}

}  // namespace

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const char* op = "linear_forward";
  check_f32(op, x);
  check_f32(op, w);
  check_f32(op, y);
  if (bias) check_f32(op, *bias);
  if (y.numel() == 0) return;
  const int batch = checked_int(x.size(0), op, x), in = checked_int(x.size(1), op, x);
  const int out = checked_int(w.size(0), op, w);
  checked_int(y.numel(), op, y);
  cublasHandle_t handle = strict_fp32_cublas(ctx);
  if (in == 0) {
    y.fill(ctx, 0.0);  // an empty sum; not left to how a BLAS treats k = 0
  } else {
    TL_CUDA_CHECK(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, batch, in, &kOne, w.data<float>(), in,
                              x.data<float>(), in, &kZero, y.data<float>(), out));
  }
  if (bias) {
    const float* ones = cudnn_algorithm_cache(ctx).ones(ctx, batch);
    TL_CUDA_CHECK(cublasSger(handle, out, batch, &kOne, bias->data<float>(), 1, ones, 1, y.data<float>(), out));
  }
}

void linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx) {
  const char* op = "linear_backward_data";
  check_f32(op, dy);
  check_f32(op, w);
  check_f32(op, dx);
  if (dx.numel() == 0) return;
  const int batch = checked_int(dx.size(0), op, dx), in = checked_int(dx.size(1), op, dx);
  const int out = checked_int(w.size(0), op, w);
  checked_int(dx.numel(), op, dx);
  if (out == 0) return dx.fill(ctx, 0.0);
  TL_CUDA_CHECK(cublasSgemm(strict_fp32_cublas(ctx), CUBLAS_OP_N, CUBLAS_OP_N, in, batch, out, &kOne,
                            w.data<float>(), in, dy.data<float>(), out, &kZero, dx.data<float>(), in));
}

void linear_backward_weight(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias) {
  const char* op = "linear_backward_weight";
  check_f32(op, x);
  check_f32(op, dy);
  check_f32(op, dw);
  if (dbias) check_f32(op, *dbias);
  if (dy.numel() == 0) return;  // no rows or no outputs: += 0
  const int batch = checked_int(x.size(0), op, x), in = checked_int(x.size(1), op, x);
  const int out = checked_int(dw.size(0), op, dw);
  checked_int(dw.numel(), op, dw);
  checked_int(dy.numel(), op, dy);
  cublasHandle_t handle = strict_fp32_cublas(ctx);
  if (in > 0)
    TL_CUDA_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, in, out, batch, &kOne, x.data<float>(), in,
                              dy.data<float>(), out, &kOne, dw.data<float>(), in));
  if (dbias) add_column_sums(ctx, handle, op, dy, *dbias);
}

void linear_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias) {
  const char* op = "linear_backward_bias";
  check_f32(op, dy);
  check_f32(op, dbias);
  if (dy.numel() == 0) return;
  checked_int(dy.numel(), op, dy);
  add_column_sums(ctx, strict_fp32_cublas(ctx), op, dy, dbias);
}

}  // namespace tl::cuda
