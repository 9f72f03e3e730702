#include "kernels/batchnorm.h"

#include <cmath>

namespace tl {

namespace {

void check_input_4d(const char* op, const Tensor& x) {
  TL_CHECK(x.defined(), op, ": x is undefined");
  TL_CHECK(x.dim() == 4, op, ": x must be [N,C,H,W], got ", x.describe());
  TL_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, op, ": x must be F32 or F64, got ", x.describe());
}

// Same shape, dtype and device as x (y, dy, dx).
void check_like_x(const char* op, const char* name, const Tensor& x, const Tensor& t) {
  TL_CHECK(t.defined(), op, ": ", name, " is undefined");
  TL_CHECK(t.shape() == x.shape(), op, ": ", name, " has shape ", shape_str(t.shape()), ", expected ",
           shape_str(x.shape()), " (the shape of x)");
  check_same_device_dtype(op, x, t);
}

// Shape [C] on x's device, F32 or F64.
void check_per_channel(const char* op, const char* name, const Tensor& x, const Tensor& t) {
  TL_CHECK(t.defined(), op, ": ", name, " is undefined");
  Shape expected{x.size(1)};
  TL_CHECK(t.shape() == expected, op, ": ", name, " has shape ", shape_str(t.shape()), ", expected ",
           shape_str(expected), " (the channels of x ", shape_str(x.shape()), ")");
  TL_CHECK(t.device() == x.device(), op, ": ", name, " ", t.describe(), " is not on the device of x ",
           x.describe());
  TL_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, op, ": ", name, " must be F32 or F64, got ",
           t.describe());
}

void check_eps(const char* op, double eps) {
  TL_CHECK(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
}

}  // namespace

void batchnorm_forward_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             Tensor& running_mean, Tensor& running_var, double momentum, double eps, Tensor& y,
                             Tensor& save_mean, Tensor& save_invstd) {
  const char* op = "batchnorm_forward_train";
  check_input_4d(op, x);
  check_like_x(op, "y", x, y);
  check_per_channel(op, "gamma", x, gamma);
  check_per_channel(op, "beta", x, beta);
  check_per_channel(op, "running_mean", x, running_mean);
  check_per_channel(op, "running_var", x, running_var);
  check_per_channel(op, "save_mean", x, save_mean);
  check_per_channel(op, "save_invstd", x, save_invstd);
  check_eps(op, eps);
  TL_CHECK(momentum >= 0 && momentum <= 1, op, ": momentum must be in [0, 1], got ", momentum);
  // As PyTorch: the unbiased variance of one value is undefined.
  TL_CHECK(x.size(0) * x.size(2) * x.size(3) > 1, op, ": expected more than 1 value per channel when training, got ",
           x.describe());
  if (x.is_cuda())
    return cuda::batchnorm_forward_train(ctx, x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean,
                                         save_invstd);
  cpu::batchnorm_forward_train(ctx, x, gamma, beta, running_mean, running_var, momentum, eps, y, save_mean,
                               save_invstd);
}

void batchnorm_forward_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  const char* op = "batchnorm_forward_eval";
  check_input_4d(op, x);
  check_like_x(op, "y", x, y);
  check_per_channel(op, "gamma", x, gamma);
  check_per_channel(op, "beta", x, beta);
  check_per_channel(op, "running_mean", x, running_mean);
  check_per_channel(op, "running_var", x, running_var);
  check_eps(op, eps);
  if (x.is_cuda()) return cuda::batchnorm_forward_eval(ctx, x, gamma, beta, running_mean, running_var, eps, y);
  cpu::batchnorm_forward_eval(ctx, x, gamma, beta, running_mean, running_var, eps, y);
}

void batchnorm_backward_train(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor* dx, Tensor* dgamma,
                              Tensor* dbeta) {
  const char* op = "batchnorm_backward_train";
  check_input_4d(op, x);
  check_like_x(op, "dy", x, dy);
  if (dx) check_like_x(op, "dx", x, *dx);
  check_per_channel(op, "gamma", x, gamma);
  check_per_channel(op, "save_mean", x, save_mean);
  check_per_channel(op, "save_invstd", x, save_invstd);
  if (dgamma) check_per_channel(op, "dgamma", x, *dgamma);
  if (dbeta) check_per_channel(op, "dbeta", x, *dbeta);
  if (x.is_cuda()) return cuda::batchnorm_backward_train(ctx, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
  cpu::batchnorm_backward_train(ctx, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
}

void batchnorm_backward_eval(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                             const Tensor& running_mean, const Tensor& running_var, double eps, Tensor* dx,
                             Tensor* dgamma, Tensor* dbeta) {
  const char* op = "batchnorm_backward_eval";
  check_input_4d(op, x);
  check_like_x(op, "dy", x, dy);
  if (dx) check_like_x(op, "dx", x, *dx);
  check_per_channel(op, "gamma", x, gamma);
  check_per_channel(op, "running_mean", x, running_mean);
  check_per_channel(op, "running_var", x, running_var);
  if (dgamma) check_per_channel(op, "dgamma", x, *dgamma);
  if (dbeta) check_per_channel(op, "dbeta", x, *dbeta);
  check_eps(op, eps);
  if (x.is_cuda())
    return cuda::batchnorm_backward_eval(ctx, x, dy, gamma, running_mean, running_var, eps, dx, dgamma, dbeta);
  cpu::batchnorm_backward_eval(ctx, x, dy, gamma, running_mean, running_var, eps, dx, dgamma, dbeta);
}

}  // namespace tl
