// CPU reference for BatchNorm2d: one channel per parallel_for iteration, every sum and every
// per-element formula in double (inputs are converted exactly; only the final store rounds to T).
#include <cmath>

#include "engine/parallel.h"
#include "kernels/batchnorm.h"
#include "kernels/cpu/dispatch.h"

namespace tl::cpu {

namespace {

// A per-channel tensor ([C], F32 or F64) read and written as double; absent when made from null.
struct PerChannel {
  explicit PerChannel(const Tensor* t) : PerChannel(t ? *t : Tensor()) {}
  explicit PerChannel(const Tensor& t)
      : f(t.defined() && t.dtype() == DType::F32 ? t.data<float>() : nullptr),
        d(t.defined() && t.dtype() == DType::F64 ? t.data<double>() : nullptr) {}
  bool present() const { return f || d; }
  double get(int64_t c) const { return f ? static_cast<double>(f[c]) : d[c]; }
  void set(int64_t c, double v) const {
    if (f) f[c] = static_cast<float>(v);
    else d[c] = v;
  }
  void add(int64_t c, double v) const { set(c, get(c) + v); }
  float* f;
  double* d;
};

// Element (n, c, i) of an [N,C,H,W] tensor with plane size hw lives at (n*C + c)*hw + i.
struct Layout {
  explicit Layout(const Tensor& x) : n(x.size(0)), c(x.size(1)), hw(x.size(2) * x.size(3)) {}
  int64_t plane(int64_t sample, int64_t channel) const { return (sample * c + channel) * hw; }
  int64_t count() const { return n * hw; }  // elements per channel
  int64_t n, c, hw;
};

// Two passes in double: the mean first, then the mean squared deviation from it. The one-pass
// E[x^2] - E[x]^2 loses everything when |mean| >> std (mean 1e4, variance 1e-4 in float).
template <class T>
void channel_moments(const T* x, const Layout& l, int64_t c, double& mean, double& sum_sq_dev) {
  double sum = 0;
  for (int64_t s = 0; s < l.n; ++s) {
    const T* p = x + l.plane(s, c);
    for (int64_t i = 0; i < l.hw; ++i) sum += static_cast<double>(p[i]);
  }
  mean = sum / static_cast<double>(l.count());
  double sq = 0;
  for (int64_t s = 0; s < l.n; ++s) {
    const T* p = x + l.plane(s, c);
    for (int64_t i = 0; i < l.hw; ++i) {
      double d = static_cast<double>(p[i]) - mean;
      sq += d * d;
    }
  }
  sum_sq_dev = sq;
}

// y = (x - mean) * invstd * gamma + beta for one channel.
template <class T>
void normalize_channel(const T* x, T* y, const Layout& l, int64_t c, double mean, double invstd, double gamma,
                       double beta) {
  double scale = invstd * gamma;
  for (int64_t s = 0; s < l.n; ++s) {
    const T* in = x + l.plane(s, c);
    T* out = y + l.plane(s, c);
    for (int64_t i = 0; i < l.hw; ++i) out[i] = static_cast<T>((static_cast<double>(in[i]) - mean) * scale + beta);
  }
}

// sum(dy) and sum(dy * xhat) over one channel, xhat = (x - mean) * invstd.
template <class T>
void channel_grad_sums(const T* x, const T* dy, const Layout& l, int64_t c, double mean, double invstd,
                       double& sum_dy, double& sum_dy_xhat) {
  double a = 0, b = 0;
  for (int64_t s = 0; s < l.n; ++s) {
    const T* in = x + l.plane(s, c);
    const T* g = dy + l.plane(s, c);
    for (int64_t i = 0; i < l.hw; ++i) {
      double gi = static_cast<double>(g[i]);
      a += gi;
      b += gi * (static_cast<double>(in[i]) - mean) * invstd;
    }
  }
  sum_dy = a;
  sum_dy_xhat = b;
}

}  // namespace

void batchnorm_forward_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             Tensor& running_mean, Tensor& running_var, double momentum, double eps, Tensor& y,
                             Tensor& save_mean, Tensor& save_invstd) {
  dispatch_float("batchnorm_forward_train", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    Layout l(x);
    PerChannel g(gamma), b(beta), rm(running_mean), rv(running_var), sm(save_mean), si(save_invstd);
    double count = static_cast<double>(l.count());
    parallel_for(ctx, l.c, [&](int64_t c) {
      double mean, sum_sq_dev;
      channel_moments(in, l, c, mean, sum_sq_dev);
      double invstd = 1.0 / std::sqrt(sum_sq_dev / count + eps);  // biased variance normalises
      normalize_channel(in, out, l, c, mean, invstd, g.get(c), b.get(c));
      sm.set(c, mean);
      si.set(c, invstd);
      double unbiased_var = sum_sq_dev / (count - 1);  // the running estimate is unbiased (PyTorch)
      rm.set(c, (1 - momentum) * rm.get(c) + momentum * mean);
      rv.set(c, (1 - momentum) * rv.get(c) + momentum * unbiased_var);
    });
  });
}

void batchnorm_forward_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  dispatch_float("batchnorm_forward_eval", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    Layout l(x);
    PerChannel g(gamma), b(beta), rm(running_mean), rv(running_var);
    parallel_for(ctx, l.c, [&](int64_t c) {
      double invstd = 1.0 / std::sqrt(rv.get(c) + eps);
      normalize_channel(in, out, l, c, rm.get(c), invstd, g.get(c), b.get(c));
    });
  });
}

// With xhat = (x - mean) * invstd and y = gamma * xhat + beta, the batch statistics depending on x:
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
void batchnorm_backward_train(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor* dx, Tensor* dgamma,
                              Tensor* dbeta) {
  dispatch_float("batchnorm_backward_train", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    const T* g_out = dy.data<T>();
    T* g_in = dx ? dx->data<T>() : nullptr;
    Layout l(x);
    PerChannel g(gamma), sm(save_mean), si(save_invstd), dg(dgamma), db(dbeta);
    double count = static_cast<double>(l.count());
    parallel_for(ctx, l.c, [&](int64_t c) {
      double mean = sm.get(c), invstd = si.get(c);
      double sum_dy, sum_dy_xhat;
      channel_grad_sums(in, g_out, l, c, mean, invstd, sum_dy, sum_dy_xhat);
      if (dg.present()) dg.add(c, sum_dy_xhat);
      if (db.present()) db.add(c, sum_dy);
      if (!g_in) return;
      double scale = g.get(c) * invstd, mean_dy = sum_dy / count, mean_dy_xhat = sum_dy_xhat / count;
      for (int64_t s = 0; s < l.n; ++s) {
        int64_t base = l.plane(s, c);
        for (int64_t i = 0; i < l.hw; ++i) {
          double xhat = (static_cast<double>(in[base + i]) - mean) * invstd;
          double gi = static_cast<double>(g_out[base + i]) - mean_dy - xhat * mean_dy_xhat;
          g_in[base + i] = static_cast<T>(scale * gi);
        }
      }
    });
  });
}

// The statistics are constants here: dx = dy * gamma * invstd, invstd = 1 / sqrt(running_var + eps).
void batchnorm_backward_eval(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                             const Tensor& running_mean, const Tensor& running_var, double eps, Tensor* dx,
                             Tensor* dgamma, Tensor* dbeta) {
  dispatch_float("batchnorm_backward_eval", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    const T* g_out = dy.data<T>();
    T* g_in = dx ? dx->data<T>() : nullptr;
    Layout l(x);
    PerChannel g(gamma), rm(running_mean), rv(running_var), dg(dgamma), db(dbeta);
    parallel_for(ctx, l.c, [&](int64_t c) {
      double mean = rm.get(c), invstd = 1.0 / std::sqrt(rv.get(c) + eps);
      if (dg.present() || db.present()) {
        double sum_dy, sum_dy_xhat;
        channel_grad_sums(in, g_out, l, c, mean, invstd, sum_dy, sum_dy_xhat);
        if (dg.present()) dg.add(c, sum_dy_xhat);
        if (db.present()) db.add(c, sum_dy);
      }
      if (!g_in) return;
      double scale = g.get(c) * invstd;
      for (int64_t s = 0; s < l.n; ++s) {
        int64_t base = l.plane(s, c);
        for (int64_t i = 0; i < l.hw; ++i) g_in[base + i] = static_cast<T>(static_cast<double>(g_out[base + i]) * scale);
      }
    });
  });
}

}  // namespace tl::cpu
