// CPU convolution: im2col + one GEMM per image. Work is split into contiguous chunks of images, one
// chunk per thread, each with its own column buffer and a single-threaded GEMM; with fewer images
// than threads the images run one after another and the GEMM itself is parallel. Either way every
// output element is computed by one thread in a fixed order, so results never depend on scheduling.
#include <algorithm>
#include <memory>

#include "engine/context.h"
#include "engine/parallel.h"
#include "kernels/conv2d.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/im2col.h"

namespace tl::cpu {

namespace {

ConvGeometry geometry(const Shape& input, const Shape& weight, const Shape& output, const Conv2dParams& p) {
  return {input[1], input[2], input[3], weight[2], weight[3], output[2], output[3], p};
}

// Uninitialised scratch: every use overwrites it before reading.
template <class T>
std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(n)]);
}

// Images [0, n) in contiguous chunks. `parallel_gemm` tells the body whether it may use the
// threads inside its GEMM (only when the batch alone cannot keep them busy).
struct BatchSplit {
  int64_t chunks, per_chunk;
  bool parallel_gemm;
};

BatchSplit split_batch(Context& ctx, int64_t n) {
  int64_t threads = std::max(1, ctx.threads());
  if (n < threads) return {n > 0 ? 1 : 0, n, true};
  int64_t per_chunk = (n + threads - 1) / threads;
  return {(n + per_chunk - 1) / per_chunk, per_chunk, false};
}

template <class T>
void run_gemm(Context& ctx, bool parallel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
              const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (parallel) return gemm(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  gemm_serial(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// dbias[o] += sum over images and positions of dy[n, o, :, :], accumulated in double.
template <class T>
void accumulate_bias_gradient(Context& ctx, const Tensor& dy, Tensor& dbias) {
  const int64_t n_images = dy.size(0), channels = dy.size(1), positions = dy.size(2) * dy.size(3);
  const T* g = dy.data<T>();
  T* db = dbias.data<T>();
  auto channel_sum = [&](int64_t o) {
    double sum = 0;
    for (int64_t n = 0; n < n_images; ++n) {
      const T* plane = g + (n * channels + o) * positions;
      for (int64_t i = 0; i < positions; ++i) sum += plane[i];
    }
    db[o] += static_cast<T>(sum);
  };
  // Threads only where the sums are long enough to pay for a parallel region.
  constexpr int64_t kParallelFrom = 1 << 16;
  if (dy.numel() >= kParallelFrom) return parallel_for(ctx, channels, channel_sum);
  for (int64_t o = 0; o < channels; ++o) channel_sum(o);
}

}  // namespace

void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                    const Conv2dParams& p) {
  dispatch_float("conv2d_forward", x, [&](auto zero) {
    using T = decltype(zero);
    const ConvGeometry g = geometry(x.shape(), w.shape(), y.shape(), p);
    const int64_t out_channels = w.size(0), rows = g.column_rows(), cols = g.column_cols();
    const int64_t in_image = g.channels * g.height * g.width, out_image = out_channels * cols;
    const T* in = x.data<T>();
    const T* weight = w.data<T>();
    const T* b = bias ? bias->data<T>() : nullptr;
    T* out = y.data<T>();
    const BatchSplit split = split_batch(ctx, x.size(0));
    parallel_for(ctx, split.chunks, [&](int64_t chunk) {
      int64_t first = chunk * split.per_chunk, last = std::min(x.size(0), first + split.per_chunk);
      auto buffer = g.is_pointwise() ? nullptr : scratch<T>(rows * cols);
      for (int64_t n = first; n < last; ++n) {
        const T* image = in + n * in_image;
        const T* columns = image;
        if (buffer) {
          im2col(g, image, buffer.get());
          columns = buffer.get();
        }
        T* y_n = out + n * out_image;
        run_gemm<T>(ctx, split.parallel_gemm, false, false, out_channels, cols, rows, T(1), weight, rows, columns,
                    cols, T(0), y_n, cols);
        if (b)
          for (int64_t o = 0; o < out_channels; ++o)
            for (int64_t i = 0; i < cols; ++i) y_n[o * cols + i] += b[o];
      }
    });
  });
}

void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) {
  dispatch_float("conv2d_backward_data", dy, [&](auto zero) {
    using T = decltype(zero);
    const ConvGeometry g = geometry(dx.shape(), w.shape(), dy.shape(), p);
    const int64_t out_channels = w.size(0), rows = g.column_rows(), cols = g.column_cols();
    const int64_t in_image = g.channels * g.height * g.width, out_image = out_channels * cols;
    const T* grad_out = dy.data<T>();
    const T* weight = w.data<T>();
    T* grad_in = dx.data<T>();
    const BatchSplit split = split_batch(ctx, dy.size(0));
    parallel_for(ctx, split.chunks, [&](int64_t chunk) {
      int64_t first = chunk * split.per_chunk, last = std::min(dy.size(0), first + split.per_chunk);
      auto buffer = g.is_pointwise() ? nullptr : scratch<T>(rows * cols);
      for (int64_t n = first; n < last; ++n) {
        T* dx_n = grad_in + n * in_image;
        // dcolumns = W^T dy_n; for a pointwise conv that already is dx_n.
        T* dcolumns = buffer ? buffer.get() : dx_n;
        run_gemm<T>(ctx, split.parallel_gemm, true, false, rows, cols, out_channels, T(1), weight, rows,
                    grad_out + n * out_image, cols, T(0), dcolumns, cols);
        if (buffer) col2im(g, dcolumns, dx_n);
      }
    });
  });
}

void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                            const Conv2dParams& p) {
  dispatch_float("conv2d_backward_filter", x, [&](auto zero) {
    using T = decltype(zero);
    const ConvGeometry g = geometry(x.shape(), dw.shape(), dy.shape(), p);
    const int64_t out_channels = dw.size(0), rows = g.column_rows(), cols = g.column_cols();
    const int64_t in_image = g.channels * g.height * g.width, out_image = out_channels * cols;
    const int64_t filter_size = out_channels * rows;
    const T* in = x.data<T>();
    const T* grad_out = dy.data<T>();
    T* grad_w = dw.data<T>();
    const BatchSplit split = split_batch(ctx, x.size(0));
    // One chunk accumulates straight into dw; several each fill a private partial sum, added to dw
    // below in chunk order.
    const bool direct = split.chunks <= 1;
    auto partials = direct ? nullptr : scratch<T>(split.chunks * filter_size);
    parallel_for(ctx, split.chunks, [&](int64_t chunk) {
      int64_t first = chunk * split.per_chunk, last = std::min(x.size(0), first + split.per_chunk);
      T* target = direct ? grad_w : partials.get() + chunk * filter_size;
      T beta = direct ? T(1) : T(0);  // the first image of a partial sum overwrites it
      auto buffer = g.is_pointwise() ? nullptr : scratch<T>(rows * cols);
      for (int64_t n = first; n < last; ++n) {
        const T* columns = in + n * in_image;
        if (buffer) {
          im2col(g, columns, buffer.get());
          columns = buffer.get();
        }
        // dw += dy_n columns^T: [O, OH*OW] x [OH*OW, C*KH*KW].
        run_gemm<T>(ctx, split.parallel_gemm, false, true, out_channels, rows, cols, T(1), grad_out + n * out_image,
                    cols, columns, cols, beta, target, rows);
        beta = T(1);
      }
    });
    if (!direct) {
      constexpr int64_t kBlock = 4096;
      parallel_for(ctx, (filter_size + kBlock - 1) / kBlock, [&](int64_t block) {
        int64_t begin = block * kBlock, end = std::min(filter_size, begin + kBlock);
        for (int64_t chunk = 0; chunk < split.chunks; ++chunk) {
          const T* part = partials.get() + chunk * filter_size;
          for (int64_t i = begin; i < end; ++i) grad_w[i] += part[i];
        }
      });
    }
    if (dbias) accumulate_bias_gradient<T>(ctx, dy, *dbias);
  });
}

void conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias) {
  dispatch_float("conv2d_backward_bias", dy, [&](auto zero) {
    using T = decltype(zero);
    accumulate_bias_gradient<T>(ctx, dy, dbias);
  });
}

}  // namespace tl::cpu
