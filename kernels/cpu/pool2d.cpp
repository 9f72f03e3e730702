// CPU reference pooling: one plane (n, c) per parallel iteration, plain loops over each window.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/parallel.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/pool2d.h"

namespace tl::cpu {

namespace {
// Planes are N*C contiguous blocks of H*W (input) or OH*OW (output) elements.
struct Planes {
  int64_t count, h, w, oh, ow;
};
Planes planes_of(const Tensor& big, const Tensor& pooled) {
  return {big.size(0) * big.size(1), big.size(2), big.size(3), pooled.size(2), pooled.size(3)};
}
}  // namespace

void maxpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& indices, const Pool2dParams& p) {
  Planes pl = planes_of(x, y);
  int64_t* idx = indices.data<int64_t>();
  dispatch_float("maxpool2d_forward", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(ctx, pl.count, [&](int64_t plane) {
      const T* src = in + plane * pl.h * pl.w;
      T* dst = out + plane * pl.oh * pl.ow;
      int64_t* arg = idx + plane * pl.oh * pl.ow;
      for (int64_t oh = 0; oh < pl.oh; ++oh) {
        for (int64_t ow = 0; ow < pl.ow; ++ow) {
          // Padding is -inf: only in-bounds positions compete. pad <= kernel/2 guarantees one exists.
          int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
          int64_t h_begin = std::max<int64_t>(h0, 0), h_end = std::min(h0 + p.kernel_h, pl.h);
          int64_t w_begin = std::max<int64_t>(w0, 0), w_end = std::min(w0 + p.kernel_w, pl.w);
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_at = h_begin * pl.w + w_begin;
          for (int64_t h = h_begin; h < h_end; ++h) {
            for (int64_t w = w_begin; w < w_end; ++w) {
              T v = src[h * pl.w + w];
              if (v > best || std::isnan(v)) {  // strict: the first of equal maxima wins; NaN wins (PyTorch)
                best = v;
                best_at = h * pl.w + w;
              }
            }
          }
          dst[oh * pl.ow + ow] = best;
          arg[oh * pl.ow + ow] = best_at;
        }
      }
    });
  });
}

void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx) {
  Planes pl = planes_of(dx, dy);
  const int64_t* idx = indices.data<int64_t>();
  dispatch_float("maxpool2d_backward", dy, [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.data<T>();
    T* gi = dx.data<T>();
    parallel_for(ctx, pl.count, [&](int64_t plane) {
      T* dst = gi + plane * pl.h * pl.w;
      std::fill(dst, dst + pl.h * pl.w, T(0));
      const T* src = g + plane * pl.oh * pl.ow;
      const int64_t* arg = idx + plane * pl.oh * pl.ow;
      for (int64_t o = 0; o < pl.oh * pl.ow; ++o) {
        TL_CHECK(arg[o] >= 0 && arg[o] < pl.h * pl.w, "maxpool2d_backward: index ", arg[o],
                 " outside a ", pl.h, "x", pl.w, " plane");
        dst[arg[o]] += src[o];  // overlapping windows (stride < kernel) may share a maximum
      }
    });
  });
}

void avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, const Pool2dParams& p) {
  Planes pl = planes_of(x, y);
  dispatch_float("avgpool2d_forward", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    const double divisor = static_cast<double>(p.kernel_h * p.kernel_w);  // padded zeros count
    parallel_for(ctx, pl.count, [&](int64_t plane) {
      const T* src = in + plane * pl.h * pl.w;
      T* dst = out + plane * pl.oh * pl.ow;
      for (int64_t oh = 0; oh < pl.oh; ++oh) {
        for (int64_t ow = 0; ow < pl.ow; ++ow) {
          int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
          double sum = 0;
          for (int64_t h = std::max<int64_t>(h0, 0); h < std::min(h0 + p.kernel_h, pl.h); ++h)
            for (int64_t w = std::max<int64_t>(w0, 0); w < std::min(w0 + p.kernel_w, pl.w); ++w)
              sum += src[h * pl.w + w];
          dst[oh * pl.ow + ow] = static_cast<T>(sum / divisor);
        }
      }
    });
  });
}

void avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dParams& p) {
  Planes pl = planes_of(dx, dy);
  dispatch_float("avgpool2d_backward", dy, [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.data<T>();
    T* gi = dx.data<T>();
    const double divisor = static_cast<double>(p.kernel_h * p.kernel_w);
    parallel_for(ctx, pl.count, [&](int64_t plane) {
      // Scatter each window's share into a double accumulator (windows overlap when stride < kernel),
      // then round once into dx. Shares landing in the padding are dropped.
      std::vector<double> acc(static_cast<size_t>(pl.h * pl.w), 0.0);
      const T* src = g + plane * pl.oh * pl.ow;
      for (int64_t oh = 0; oh < pl.oh; ++oh) {
        for (int64_t ow = 0; ow < pl.ow; ++ow) {
          int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
          double share = src[oh * pl.ow + ow] / divisor;
          for (int64_t h = std::max<int64_t>(h0, 0); h < std::min(h0 + p.kernel_h, pl.h); ++h)
            for (int64_t w = std::max<int64_t>(w0, 0); w < std::min(w0 + p.kernel_w, pl.w); ++w)
              acc[static_cast<size_t>(h * pl.w + w)] += share;
        }
      }
      T* dst = gi + plane * pl.h * pl.w;
      for (int64_t i = 0; i < pl.h * pl.w; ++i) dst[i] = static_cast<T>(acc[static_cast<size_t>(i)]);
    });
  });
}

void adaptive_avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y) {
  Planes pl = planes_of(x, y);
  dispatch_float("adaptive_avgpool2d_forward", x, [&](auto zero) {
    using T = decltype(zero);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    parallel_for(ctx, pl.count, [&](int64_t plane) {
      const T* src = in + plane * pl.h * pl.w;
      T* dst = out + plane * pl.oh * pl.ow;
      for (int64_t oh = 0; oh < pl.oh; ++oh) {
        int64_t h_begin = adaptive_bin_start(oh, pl.h, pl.oh), h_end = adaptive_bin_end(oh, pl.h, pl.oh);
        for (int64_t ow = 0; ow < pl.ow; ++ow) {
          int64_t w_begin = adaptive_bin_start(ow, pl.w, pl.ow), w_end = adaptive_bin_end(ow, pl.w, pl.ow);
          double sum = 0;
          for (int64_t h = h_begin; h < h_end; ++h)
            for (int64_t w = w_begin; w < w_end; ++w) sum += src[h * pl.w + w];
          dst[oh * pl.ow + ow] = static_cast<T>(sum / static_cast<double>((h_end - h_begin) * (w_end - w_begin)));
        }
      }
    });
  });
}

void adaptive_avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  Planes pl = planes_of(dx, dy);
  dispatch_float("adaptive_avgpool2d_backward", dy, [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.data<T>();
    T* gi = dx.data<T>();
    parallel_for(ctx, pl.count, [&](int64_t plane) {
      // Scatter each bin's share in double (bins may overlap), then round once into dx.
      std::vector<double> acc(static_cast<size_t>(pl.h * pl.w), 0.0);
      const T* src = g + plane * pl.oh * pl.ow;
      for (int64_t oh = 0; oh < pl.oh; ++oh) {
        int64_t h_begin = adaptive_bin_start(oh, pl.h, pl.oh), h_end = adaptive_bin_end(oh, pl.h, pl.oh);
        for (int64_t ow = 0; ow < pl.ow; ++ow) {
          int64_t w_begin = adaptive_bin_start(ow, pl.w, pl.ow), w_end = adaptive_bin_end(ow, pl.w, pl.ow);
          double share = src[oh * pl.ow + ow] / static_cast<double>((h_end - h_begin) * (w_end - w_begin));
          for (int64_t h = h_begin; h < h_end; ++h)
            for (int64_t w = w_begin; w < w_end; ++w) acc[static_cast<size_t>(h * pl.w + w)] += share;
        }
      }
      T* dst = gi + plane * pl.h * pl.w;
      for (int64_t i = 0; i < pl.h * pl.w; ++i) dst[i] = static_cast<T>(acc[static_cast<size_t>(i)]);
    });
  });
}

}  // namespace tl::cpu
