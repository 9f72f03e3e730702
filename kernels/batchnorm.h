#pragma once
// BatchNorm over the channels of an NCHW tensor. Entry points validate shapes and dispatch on the
// device to the cpu:: twin or the cuda:: twin (kernels/cuda/batchnorm_*.cu; x, y, dy, dx F32 there).
//
// x, y, dx, dy: [N,C,H,W], one dtype (F32 or F64), y/dx the same shape, dtype and device as x.
// Per-channel tensors (gamma, beta, running_*, save_*, dgamma, dbeta): shape [C] on x's device,
// each F32 or F64 independently of x (the arithmetic is done in double either way).
//
// Training normalises with the batch statistics: mean and BIASED variance over N*H*W elements,
// computed two-pass in double (one-pass E[x^2]-E[x]^2 cancels catastrophically when |mean| >> std).
// It writes save_mean and save_invstd = 1/sqrt(var + eps) for backward and updates the running
// statistics in place as PyTorch does, with the UNBIASED variance:
//   running = (1 - momentum) * running + momentum * batch_stat.
// Eval normalises with the running statistics and changes nothing.
#include "engine/tensor.h"

namespace tl {
class Context;

// Throws when N*H*W < 2 (the unbiased variance needs two values per channel, as in PyTorch).
void batchnorm_forward_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             Tensor& running_mean, Tensor& running_var, double momentum, double eps, Tensor& y,
                             Tensor& save_mean, Tensor& save_invstd);
void batchnorm_forward_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y);
// Backward of the training forward (the batch statistics depend on x). dx is overwritten (skipped
// when null); dgamma and dbeta are ACCUMULATED (+=, skipped when null).
void batchnorm_backward_train(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor* dx, Tensor* dgamma,
                              Tensor* dbeta);
// Backward of the eval forward (statistics are constants): dx = dy * gamma / sqrt(running_var + eps).
void batchnorm_backward_eval(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                             const Tensor& running_mean, const Tensor& running_var, double eps, Tensor* dx,
                             Tensor* dgamma, Tensor* dbeta);

namespace cpu {
void batchnorm_forward_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             Tensor& running_mean, Tensor& running_var, double momentum, double eps, Tensor& y,
                             Tensor& save_mean, Tensor& save_invstd);
void batchnorm_forward_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y);
void batchnorm_backward_train(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor* dx, Tensor* dgamma,
                              Tensor* dbeta);
void batchnorm_backward_eval(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                             const Tensor& running_mean, const Tensor& running_var, double eps, Tensor* dx,
                             Tensor* dgamma, Tensor* dbeta);
}  // namespace cpu
namespace cuda {
void batchnorm_forward_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             Tensor& running_mean, Tensor& running_var, double momentum, double eps, Tensor& y,
                             Tensor& save_mean, Tensor& save_invstd);
void batchnorm_forward_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y);
void batchnorm_backward_train(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor* dx, Tensor* dgamma,
                              Tensor* dbeta);
void batchnorm_backward_eval(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                             const Tensor& running_mean, const Tensor& running_var, double eps, Tensor* dx,
                             Tensor* dgamma, Tensor* dbeta);
}  // namespace cuda
}  // namespace tl
