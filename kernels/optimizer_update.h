#pragma once
// Fused in-place optimizer updates, one call per parameter tensor, with PyTorch's exact formulas
// (torch.optim.SGD, Adam/AdamW, RMSprop; maximize, amsgrad and centered are not supported).
// Every state tensor must have the parameter's shape, dtype and device. The entry points validate
// and dispatch; the cpu:: twins are the specification (double arithmetic, rounded once on store);
// the cuda:: twins (F32 only) run the same arithmetic as one fused kernel per tensor.
#include <cstdint>

#include "engine/tensor.h"

namespace tl {
class Context;

// g = grad + weight_decay*p; with momentum: b = g on the first step, else momentum*b + (1-dampening)*g,
// then g = g + momentum*b (Nesterov) or g = b; finally p -= lr*g. momentum_buffer is null when
// momentum == 0 and required otherwise (its contents are ignored when first_step).
void sgd_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor* momentum_buffer, double lr, double momentum,
                double dampening, bool nesterov, double weight_decay, bool first_step);
// step counts from 1. Adam: g = grad + weight_decay*p. AdamW (decoupled): p *= 1 - lr*weight_decay.
// m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g^2;
// p -= lr * (m/(1-beta1^step)) / (sqrt(v/(1-beta2^step)) + eps).
void adam_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
                 int64_t step);
// g = grad + weight_decay*p; v = alpha*v + (1-alpha)*g^2; with momentum: b = momentum*b + g/(sqrt(v)+eps),
// p -= lr*b; without: p -= lr*g/(sqrt(v)+eps). momentum_buffer (zero-initialised by the caller) is null
// when momentum == 0 and required otherwise.
void rmsprop_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor* momentum_buffer,
                    double lr, double alpha, double eps, double weight_decay, double momentum);

namespace cpu {
void sgd_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor* momentum_buffer, double lr, double momentum,
                double dampening, bool nesterov, double weight_decay, bool first_step);
void adam_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
                 int64_t step);
void rmsprop_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor* momentum_buffer,
                    double lr, double alpha, double eps, double weight_decay, double momentum);
}  // namespace cpu
namespace cuda {
void sgd_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor* momentum_buffer, double lr, double momentum,
                double dampening, bool nesterov, double weight_decay, bool first_step);
void adam_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
                 int64_t step);
void rmsprop_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor* momentum_buffer,
                    double lr, double alpha, double eps, double weight_decay, double momentum);
}  // namespace cuda
}  // namespace tl
