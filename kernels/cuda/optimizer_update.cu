// Fused optimizer updates on CUDA: one elementwise kernel per parameter tensor that reads the
// parameter, its gradient and its state once and writes parameter and state once.
//
// The CPU twin (kernels/cpu/optimizer_update.cpp) is the specification: it loads each float, does
// the arithmetic in double and rounds once on store. These kernels do exactly the same, with the
// same expressions in the same order, so the twins agree to the last float bit except where the
// compiler contracts a multiply-add in double (a 2^-53 difference before the rounding to float).
// Double arithmetic should stay hidden behind memory traffic on the target GPU: an H100 issues
// roughly 100 FP64 operations in the time it moves Adam's 28 bytes per element, and Adam's rule,
// with its divisions and square root expanded, needs fewer (to be confirmed by `tl bench`).
#include <cmath>
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"
#include "kernels/optimizer_update.h"

namespace tl::cuda {

namespace {

// The arithmetic type of the update rules (the CPU twin's).
using Real = double;

// The streams one update touches. state1/state2 are null when the rule does not use them; a null
// stream is neither read nor written (the rule then gets a dummy register).
struct UpdateArrays {
  float* param = nullptr;
  const float* grad = nullptr;
  float* state1 = nullptr;
  float* state2 = nullptr;
};

struct SgdRule {
  Real lr, momentum, dampening, weight_decay;
  bool nesterov, first_step, has_momentum;
  // buffer: state1 (momentum_buffer). Same statements as cpu::sgd_update.
  __device__ void operator()(float& p, float g, float& buffer, float&) const {
    Real d = Real(g) + weight_decay * Real(p);
    if (has_momentum) {
      Real buf = first_step ? d : momentum * Real(buffer) + (1.0 - dampening) * d;
      buffer = float(buf);
      d = nesterov ? d + momentum * buf : buf;
    }
    p = float(Real(p) - lr * d);
  }
};

struct AdamRule {
  Real lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2;
  bool decoupled_weight_decay;
  // m: state1 (exp_avg), v: state2 (exp_avg_sq). Same statements as cpu::adam_update.
  __device__ void operator()(float& p, float g, float& m, float& v) const {
    Real theta = p;
    Real d = g;
    if (decoupled_weight_decay) {
      theta *= 1.0 - lr * weight_decay;
    } else {
      d += weight_decay * theta;
    }
    Real mi = beta1 * Real(m) + (1.0 - beta1) * d;
    Real vi = beta2 * Real(v) + (1.0 - beta2) * d * d;
    m = float(mi);
    v = float(vi);
    Real m_hat = mi / bias_correction1;
    Real v_hat = vi / bias_correction2;
    p = float(theta - lr * m_hat / (sqrt(v_hat) + eps));
  }
};

struct RmspropRule {
  Real lr, alpha, eps, weight_decay, momentum;
  bool has_momentum;
  // v: state1 (square_avg), buffer: state2 (momentum_buffer). Same statements as cpu::rmsprop_update.
  __device__ void operator()(float& p, float g, float& v, float& buffer) const {
    Real d = Real(g) + weight_decay * Real(p);
    Real vi = alpha * Real(v) + (1.0 - alpha) * d * d;
    v = float(vi);
    Real scaled = d / (sqrt(vi) + eps);
    if (has_momentum) {
      Real buf = momentum * Real(buffer) + scaled;
      buffer = float(buf);
      scaled = buf;
    }
    p = float(Real(p) - lr * scaled);
  }
};

template <class Rule>
__device__ inline void apply_scalar(const UpdateArrays& a, int64_t i, const Rule& rule) {
  float p = a.param[i];
  float s1 = a.state1 ? a.state1[i] : 0.0f;
  float s2 = a.state2 ? a.state2[i] : 0.0f;
  rule(p, a.grad[i], s1, s2);
  a.param[i] = p;
  if (a.state1) a.state1[i] = s1;
  if (a.state2) a.state2[i] = s2;
}

// Four elements per thread through 16-byte loads and stores; every pointer is 16-byte aligned.
template <class Rule>
__device__ inline void apply_vector(const UpdateArrays& a, int64_t i4, const Rule& rule) {
  float4 p = reinterpret_cast<const float4*>(a.param)[i4];
  float4 g = reinterpret_cast<const float4*>(a.grad)[i4];
  float4 s1 = a.state1 ? reinterpret_cast<const float4*>(a.state1)[i4] : float4{0, 0, 0, 0};
  float4 s2 = a.state2 ? reinterpret_cast<const float4*>(a.state2)[i4] : float4{0, 0, 0, 0};
  rule(p.x, g.x, s1.x, s2.x);
  rule(p.y, g.y, s1.y, s2.y);
  rule(p.z, g.z, s1.z, s2.z);
  rule(p.w, g.w, s1.w, s2.w);
  reinterpret_cast<float4*>(a.param)[i4] = p;
  if (a.state1) reinterpret_cast<float4*>(a.state1)[i4] = s1;
  if (a.state2) reinterpret_cast<float4*>(a.state2)[i4] = s2;
}

// Grid-stride over float4 groups [0, n/4) when `vectorised`, then over the scalar elements left
// ([4*(n/4), n), or all of [0, n) when not vectorised). Elements are independent: any split works.
template <class Rule>
__global__ void fused_update_kernel(UpdateArrays a, Rule rule, int64_t n, bool vectorised) {
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t scalar_begin = 0;
  if (vectorised) {
    const int64_t groups = n / 4;
    for (int64_t i4 = first; i4 < groups; i4 += stride) apply_vector(a, i4, rule);
    scalar_begin = groups * 4;
  }
  for (int64_t i = scalar_begin + first; i < n; i += stride) apply_scalar(a, i, rule);
}

bool aligned16(const void* ptr) { return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <class Rule>
void launch_update(Context& ctx, const char* kernel_name, const UpdateArrays& a, const Rule& rule, int64_t n) {
  if (n == 0) return;
  // Views (slices) may start anywhere: float4 only when every stream is 16-byte aligned.
  bool vectorised = aligned16(a.param) && aligned16(a.grad) && aligned16(a.state1) && aligned16(a.state2);
  int64_t work_items = vectorised ? (n + 3) / 4 : n;
  fused_update_kernel<<<grid_for(work_items), kThreadsPerBlock, 0, ctx.cuda().stream>>>(a, rule, n, vectorised);
  TL_CUDA_CHECK_LAUNCH(kernel_name);
}

void check_all_f32(const char* op, const Tensor& param, const Tensor& grad, const Tensor* state1,
                   const Tensor* state2) {
  check_f32(op, param);
  check_f32(op, grad);
  if (state1) check_f32(op, *state1);
  if (state2) check_f32(op, *state2);
}

}  // namespace

void sgd_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor* momentum_buffer, double lr, double momentum,
                double dampening, bool nesterov, double weight_decay, bool first_step) {
  check_all_f32("sgd_update", param, grad, momentum_buffer, nullptr);
  UpdateArrays a;
  a.param = param.data<float>();
  a.grad = grad.data<float>();
  a.state1 = momentum_buffer ? momentum_buffer->data<float>() : nullptr;
  SgdRule rule{lr, momentum, dampening, weight_decay, nesterov, first_step, momentum_buffer != nullptr};
  launch_update(ctx, "sgd_update_kernel", a, rule, param.numel());
}

void adam_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, bool decoupled_weight_decay,
                 int64_t step) {
  check_all_f32("adam_update", param, grad, &exp_avg, &exp_avg_sq);
  // On the host in double, as the CPU twin computes them.
  double bias_correction1 = 1.0 - std::pow(beta1, double(step));
  double bias_correction2 = 1.0 - std::pow(beta2, double(step));
  UpdateArrays a;
  a.param = param.data<float>();
  a.grad = grad.data<float>();
  a.state1 = exp_avg.data<float>();
  a.state2 = exp_avg_sq.data<float>();
  AdamRule rule{lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, decoupled_weight_decay};
  launch_update(ctx, "adam_update_kernel", a, rule, param.numel());
}

void rmsprop_update(Context& ctx, Tensor& param, const Tensor& grad, Tensor& square_avg, Tensor* momentum_buffer,
                    double lr, double alpha, double eps, double weight_decay, double momentum) {
  check_all_f32("rmsprop_update", param, grad, &square_avg, momentum_buffer);
  UpdateArrays a;
  a.param = param.data<float>();
  a.grad = grad.data<float>();
  a.state1 = square_avg.data<float>();
  a.state2 = momentum_buffer ? momentum_buffer->data<float>() : nullptr;
  RmspropRule rule{lr, alpha, eps, weight_decay, momentum, momentum_buffer != nullptr};
  launch_update(ctx, "rmsprop_update_kernel", a, rule, param.numel());
}

}  // namespace tl::cuda
