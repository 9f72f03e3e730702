#include "kernels/optimizer_update.h"

#include <string>

namespace tl {

namespace {

// `what` names the state tensor in the error: "sgd_update: momentum_buffer: shape mismatch, ...".
void check_like_param(const char* op, const char* what, const Tensor& param, const Tensor& t) {
  TL_CHECK(t.defined(), op, ": ", what, " is undefined (parameter ", param.describe(), ")");
  check_same_shape((std::string(op) + ": " + what).c_str(), param, t);
  check_same_device_dtype((std::string(op) + ": " + what).c_str(), param, t);
}

void check_param(const char* op, const Tensor& param, const Tensor& grad) {
  TL_CHECK(param.defined(), op, ": parameter is undefined");
  TL_CHECK(param.dtype() == DType::F32 || param.dtype() == DType::F64, op, ": parameter must be F32 or F64, got ",
           param.describe());
  check_like_param(op, "grad", param, grad);
}

}  // namespace

void sgd_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor* momentum_buffer, double lr, double momentum,
                double dampening, bool nesterov, double weight_decay, bool first_step) {
  const char* op = "sgd_update";
  check_param(op, param, grad);
  TL_CHECK(!nesterov || momentum != 0, op, ": Nesterov momentum requires momentum != 0");
  if (momentum != 0) {
    TL_CHECK(momentum_buffer != nullptr, op, ": momentum ", momentum, " needs a momentum_buffer");
    check_like_param(op, "momentum_buffer", param, *momentum_buffer);
  }
  Tensor* buffer = momentum != 0 ? momentum_buffer : nullptr;
  if (param.is_cuda())
    return cuda::sgd_update(ctx, param, grad, buffer, lr, momentum, dampening, nesterov, weight_decay, first_step);
  cpu::sgd_update(ctx, param, grad, buffer, lr, momentum, dampening, nesterov, weight_decay, first_step);
}

void adam_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
                 int64_t step) {
  const char* op = "adam_update";
  check_param(op, param, grad);
  check_like_param(op, "exp_avg", param, exp_avg);
  check_like_param(op, "exp_avg_sq", param, exp_avg_sq);
  TL_CHECK(step >= 1, op, ": step counts from 1, got ", step);
  // beta < 1 keeps the bias corrections 1 - beta^step away from zero.
  TL_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, op, ": betas must be in [0,1), got ", beta1, ", ",
           beta2);
  if (param.is_cuda())
    return cuda::adam_update(ctx, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                             decoupled_weight_decay, step);
  cpu::adam_update(ctx, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                   decoupled_weight_decay, step);
}

void rmsprop_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor* momentum_buffer,
                    double lr, double alpha, double eps, double weight_decay, double momentum) {
  const char* op = "rmsprop_update";
  check_param(op, param, grad);
  check_like_param(op, "square_avg", param, square_avg);
  if (momentum != 0) {
    TL_CHECK(momentum_buffer != nullptr, op, ": momentum ", momentum, " needs a momentum_buffer");
    check_like_param(op, "momentum_buffer", param, *momentum_buffer);
  }
  Tensor* buffer = momentum != 0 ? momentum_buffer : nullptr;
  if (param.is_cuda())
    return cuda::rmsprop_update(ctx, param, grad, square_avg, buffer, lr, alpha, eps, weight_decay, momentum);
  cpu::rmsprop_update(ctx, param, grad, square_avg, buffer, lr, alpha, eps, weight_decay, momentum);
}

}  // namespace tl
