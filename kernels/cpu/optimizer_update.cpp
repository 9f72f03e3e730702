#include "kernels/optimizer_update.h"

#include <algorithm>
#include <cmath>

#include "engine/parallel.h"
#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

namespace {

// Elementwise work split into fixed chunks so large tensors (VGG's 100M-element fc6) use every
// thread while small ones (biases) run inline. Each element is independent: results do not depend
// on the split. The arithmetic is done in double and rounded once on store.
template <class F>
void for_each_element(Context& ctx, int64_t n, F&& body) {
  constexpr int64_t kChunk = 1 << 16;
  parallel_for(ctx, (n + kChunk - 1) / kChunk, [&](int64_t chunk) {
    int64_t end = std::min(n, (chunk + 1) * kChunk);
    for (int64_t i = chunk * kChunk; i < end; ++i) body(i);
  });
}

}  // namespace

void sgd_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor* momentum_buffer, double lr, double momentum,
                double dampening, bool nesterov, double weight_decay, bool first_step) {
  dispatch_float("sgd_update", param, [&](auto zero) {
    using T = decltype(zero);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* b = momentum_buffer ? momentum_buffer->data<T>() : nullptr;
    for_each_element(ctx, param.numel(), [&](int64_t i) {
      double d = double(g[i]) + weight_decay * double(p[i]);
      if (b) {
        double buf = first_step ? d : momentum * double(b[i]) + (1.0 - dampening) * d;
        b[i] = T(buf);
        d = nesterov ? d + momentum * buf : buf;
      }
      p[i] = T(double(p[i]) - lr * d);
    });
  });
}

void adam_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
                 int64_t step) {
  double bias_correction1 = 1.0 - std::pow(beta1, double(step));
  double bias_correction2 = 1.0 - std::pow(beta2, double(step));
  dispatch_float("adam_update", param, [&](auto zero) {
    using T = decltype(zero);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* m = exp_avg.data<T>();
    T* v = exp_avg_sq.data<T>();
    for_each_element(ctx, param.numel(), [&](int64_t i) {
      double theta = p[i];
      double d = g[i];
      if (decoupled_weight_decay) {
        theta *= 1.0 - lr * weight_decay;
      } else {
        d += weight_decay * theta;
      }
      double mi = beta1 * double(m[i]) + (1.0 - beta1) * d;
      double vi = beta2 * double(v[i]) + (1.0 - beta2) * d * d;
      m[i] = T(mi);
      v[i] = T(vi);
      double m_hat = mi / bias_correction1;
      double v_hat = vi / bias_correction2;
      p[i] = T(theta - lr * m_hat / (std::sqrt(v_hat) + eps));
    });
  });
}

void rmsprop_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor* momentum_buffer,
                    double lr, double alpha, double eps, double weight_decay, double momentum) {
  dispatch_float("rmsprop_update", param, [&](auto zero) {
    using T = decltype(zero);
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* v = square_avg.data<T>();
    T* b = momentum_buffer ? momentum_buffer->data<T>() : nullptr;
    for_each_element(ctx, param.numel(), [&](int64_t i) {
      double d = double(g[i]) + weight_decay * double(p[i]);
      double vi = alpha * double(v[i]) + (1.0 - alpha) * d * d;
      v[i] = T(vi);
      double scaled = d / (std::sqrt(vi) + eps);
      if (b) {
        double buf = momentum * double(b[i]) + scaled;
        b[i] = T(buf);
        scaled = buf;
      }
      p[i] = T(double(p[i]) - lr * scaled);
    });
  });
}

}  // namespace tl::cpu
