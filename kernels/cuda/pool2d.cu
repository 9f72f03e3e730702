// CUDA twins of 2-d pooling. Every kernel reproduces the CPU twin's arithmetic in the same order, so
// the results are bit-identical to it (and deterministic: no atomics anywhere):
// - forward kernels: one thread per output, scanning its window row-major like the CPU loops; the
//   averages sum the floats in double and divide once, as the CPU twin does;
// - backward kernels gather: one thread per dx element scans, in increasing output order, only the
//   windows (or adaptive bins) that can contain it, and adds their shares in the order the CPU twin's
//   scatter adds them. Windows overlap (kernel 3, stride 2), so a scatter would need atomics, whose
//   order varies from run to run and would not match the CPU's rounding;
// - maxpool2d_backward without the pooling geometry cannot know the windows: one warp per plane
//   scatters the outputs in order, 32 at a time, and lanes that hit the same input position are summed
//   by the lowest of them in lane order (__match_any_sync), which is again the CPU twin's order;
// - global average pooling (output 1x1, ResNet's avgpool) reads each plane with one warp, coalesced.
#include <cmath>
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/launch.h"
#include "kernels/pool2d.h"

namespace tl::cuda {

namespace {

constexpr int kWarp = 32;

// Planes are N*C contiguous blocks of h*w (input) and oh*ow (output) elements.
struct Geometry {
  int64_t planes, h, w, oh, ow;
  int64_t kernel_h = 0, kernel_w = 0, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};

Geometry geometry_of(const Tensor& big, const Tensor& pooled) {
  return {big.size(0) * big.size(1), big.size(2), big.size(3), pooled.size(2), pooled.size(3)};
}
Geometry geometry_of(const Tensor& big, const Tensor& pooled, const Pool2dParams& p) {
  Geometry g = geometry_of(big, pooled);
  g.kernel_h = p.kernel_h, g.kernel_w = p.kernel_w, g.stride_h = p.stride_h, g.stride_w = p.stride_w;
  g.pad_h = p.pad_h, g.pad_w = p.pad_w;
  return g;
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Windows o cover input positions [o*stride - pad, o*stride - pad + kernel). The first window that
// reaches `pos` has o*stride >= pos + pad - kernel + 1; the last starts at or before it.
__device__ __forceinline__ int64_t first_window(int64_t pos, int64_t kernel, int64_t stride, int64_t pad) {
  int64_t need = pos + pad - kernel + 1;
  return need <= 0 ? 0 : (need + stride - 1) / stride;
}
__device__ __forceinline__ int64_t last_window(int64_t pos, int64_t stride, int64_t pad, int64_t windows) {
  return min64((pos + pad) / stride, windows - 1);  // pos + pad >= 0
}

// pool2d.h's adaptive_bin_start/end, on the device.
__device__ __forceinline__ int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
__device__ __forceinline__ int64_t bin_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

#define TL_GRID_STRIDE(i, n)                                                                  \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void maxpool_forward_kernel(const float* x, float* y, int64_t* indices, Geometry g) {
  TL_GRID_STRIDE(o, g.planes * g.oh * g.ow) {
    const int64_t ow = o % g.ow, oh = (o / g.ow) % g.oh, plane = o / (g.ow * g.oh);
    const float* src = x + plane * g.h * g.w;
    // Padding is -inf: only in-bounds positions compete (pad <= kernel/2 guarantees one exists).
    const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
    const int64_t h_begin = max64(h0, 0), h_end = min64(h0 + g.kernel_h, g.h);
    const int64_t w_begin = max64(w0, 0), w_end = min64(w0 + g.kernel_w, g.w);
    float best = -INFINITY;
    int64_t best_at = h_begin * g.w + w_begin;
    for (int64_t h = h_begin; h < h_end; ++h) {
      for (int64_t w = w_begin; w < w_end; ++w) {
        const float v = src[h * g.w + w];
        if (v > best || isnan(v)) {  // strict: the first of equal maxima wins; NaN wins (CPU twin, PyTorch)
          best = v;
          best_at = h * g.w + w;
        }
      }
    }
    y[o] = best;
    indices[o] = best_at;
  }
}

// dx[i] = sum of dy over the windows whose argmax is i, in increasing window order.
__global__ void maxpool_backward_gather_kernel(const float* dy, const int64_t* indices, float* dx, Geometry g) {
  TL_GRID_STRIDE(i, g.planes * g.h * g.w) {
    const int64_t w = i % g.w, h = (i / g.w) % g.h, plane = i / (g.w * g.h);
    const int64_t self = h * g.w + w;
    const int64_t out_base = plane * g.oh * g.ow;
    const int64_t oh_end = last_window(h, g.stride_h, g.pad_h, g.oh);
    const int64_t ow_end = last_window(w, g.stride_w, g.pad_w, g.ow);
    const int64_t ow_begin = first_window(w, g.kernel_w, g.stride_w, g.pad_w);
    float sum = 0.0f;
    for (int64_t oh = first_window(h, g.kernel_h, g.stride_h, g.pad_h); oh <= oh_end; ++oh)
      for (int64_t ow = ow_begin; ow <= ow_end; ++ow) {
        const int64_t o = out_base + oh * g.ow + ow;
        if (indices[o] == self) sum += dy[o];
      }
    dx[i] = sum;
  }
}

// One warp per plane: zero the plane, then add the outputs into it 32 at a time, in order.
__global__ void maxpool_backward_ordered_scatter_kernel(const float* dy, const int64_t* indices, float* dx,
                                                        int64_t planes, int64_t in_plane, int64_t out_plane) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t plane = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp; plane < planes; plane += warps) {
    float* dst = dx + plane * in_plane;
    const float* src = dy + plane * out_plane;
    const int64_t* arg = indices + plane * out_plane;
    for (int64_t i = lane; i < in_plane; i += kWarp) dst[i] = 0.0f;
    __syncwarp();  // the zeros are visible to every lane before any lane adds
    for (int64_t base = 0; base < out_plane; base += kWarp) {
      const int64_t o = base + lane;
      int64_t target = o < out_plane ? arg[o] : -1;
      if (target >= in_plane) target = -1;  // not an index forward could write: ignored (never out of bounds)
      const unsigned same = __match_any_sync(0xffffffffu, static_cast<unsigned long long>(target));
      if (target >= 0 && lane == __ffs(same) - 1) {  // the lowest lane of each group adds the group in order
        float acc = dst[target];
        for (unsigned rest = same; rest != 0; rest &= rest - 1) acc += src[base + (__ffs(rest) - 1)];
        dst[target] = acc;
      }
      __syncwarp();  // this chunk's sums are visible before the next chunk reads them
    }
  }
}

__global__ void avgpool_forward_kernel(const float* x, float* y, Geometry g) {
  const double divisor = static_cast<double>(g.kernel_h * g.kernel_w);  // padded zeros count
  TL_GRID_STRIDE(o, g.planes * g.oh * g.ow) {
    const int64_t ow = o % g.ow, oh = (o / g.ow) % g.oh, plane = o / (g.ow * g.oh);
    const float* src = x + plane * g.h * g.w;
    const int64_t h0 = oh * g.stride_h - g.pad_h, w0 = ow * g.stride_w - g.pad_w;
    const int64_t h_end = min64(h0 + g.kernel_h, g.h), w_end = min64(w0 + g.kernel_w, g.w);
    double sum = 0;
    for (int64_t h = max64(h0, 0); h < h_end; ++h)
      for (int64_t w = max64(w0, 0); w < w_end; ++w) sum += src[h * g.w + w];
    y[o] = static_cast<float>(sum / divisor);
  }
}

__global__ void avgpool_backward_gather_kernel(const float* dy, float* dx, Geometry g) {
  const double divisor = static_cast<double>(g.kernel_h * g.kernel_w);
  TL_GRID_STRIDE(i, g.planes * g.h * g.w) {
    const int64_t w = i % g.w, h = (i / g.w) % g.h, plane = i / (g.w * g.h);
    const float* src = dy + plane * g.oh * g.ow;
    const int64_t oh_end = last_window(h, g.stride_h, g.pad_h, g.oh);
    const int64_t ow_end = last_window(w, g.stride_w, g.pad_w, g.ow);
    const int64_t ow_begin = first_window(w, g.kernel_w, g.stride_w, g.pad_w);
    double acc = 0;
    for (int64_t oh = first_window(h, g.kernel_h, g.stride_h, g.pad_h); oh <= oh_end; ++oh)
      for (int64_t ow = ow_begin; ow <= ow_end; ++ow) acc += src[oh * g.ow + ow] / divisor;
    dx[i] = static_cast<float>(acc);
  }
}

__global__ void adaptive_avgpool_forward_kernel(const float* x, float* y, Geometry g) {
  TL_GRID_STRIDE(o, g.planes * g.oh * g.ow) {
    const int64_t ow = o % g.ow, oh = (o / g.ow) % g.oh, plane = o / (g.ow * g.oh);
    const float* src = x + plane * g.h * g.w;
    const int64_t h_begin = bin_start(oh, g.h, g.oh), h_end = bin_end(oh, g.h, g.oh);
    const int64_t w_begin = bin_start(ow, g.w, g.ow), w_end = bin_end(ow, g.w, g.ow);
    double sum = 0;
    for (int64_t h = h_begin; h < h_end; ++h)
      for (int64_t w = w_begin; w < w_end; ++w) sum += src[h * g.w + w];
    y[o] = static_cast<float>(sum / static_cast<double>((h_end - h_begin) * (w_end - w_begin)));
  }
}

// Output 1x1: one warp per plane reads it coalesced, sums in double (in a different order from the
// CPU twin: the double sums agree to ~1e-16 relative, so the float results agree to within an ulp).
__global__ void global_avgpool_forward_kernel(const float* x, float* y, int64_t planes, int64_t plane_size) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t plane = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp; plane < planes; plane += warps) {
    const float* src = x + plane * plane_size;
    double sum = 0;
    for (int64_t i = lane; i < plane_size; i += kWarp) sum += src[i];
    for (int offset = kWarp / 2; offset > 0; offset /= 2) sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (lane == 0) y[plane] = static_cast<float>(sum / static_cast<double>(plane_size));
  }
}

// dx[h,w] sums dy/count over the bins containing (h,w), in increasing bin order. The candidate range
// is widened by one bin each side and every bin is tested, so an off-by-one in the range cannot drop one.
__global__ void adaptive_avgpool_backward_gather_kernel(const float* dy, float* dx, Geometry g) {
  TL_GRID_STRIDE(i, g.planes * g.h * g.w) {
    const int64_t w = i % g.w, h = (i / g.w) % g.h, plane = i / (g.w * g.h);
    const float* src = dy + plane * g.oh * g.ow;
    const int64_t oh_begin = max64((h * g.oh) / g.h - 1, 0);
    const int64_t oh_end = min64(((h + 1) * g.oh - 1) / g.h + 1, g.oh - 1);
    const int64_t ow_begin = max64((w * g.ow) / g.w - 1, 0);
    const int64_t ow_end = min64(((w + 1) * g.ow - 1) / g.w + 1, g.ow - 1);
    double acc = 0;
    for (int64_t oh = oh_begin; oh <= oh_end; ++oh) {
      const int64_t h_begin = bin_start(oh, g.h, g.oh), h_end = bin_end(oh, g.h, g.oh);
      if (h < h_begin || h >= h_end) continue;
      for (int64_t ow = ow_begin; ow <= ow_end; ++ow) {
        const int64_t w_begin = bin_start(ow, g.w, g.ow), w_end = bin_end(ow, g.w, g.ow);
        if (w < w_begin || w >= w_end) continue;
        acc += src[oh * g.ow + ow] / static_cast<double>((h_end - h_begin) * (w_end - w_begin));
      }
    }
    dx[i] = static_cast<float>(acc);
  }
}

#undef TL_GRID_STRIDE

cudaStream_t stream_of(Context& ctx) { return ctx.cuda().stream; }

}  // namespace

void maxpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& indices, const Pool2dParams& params) {
  check_f32("maxpool2d_forward", x);
  if (y.numel() == 0) return;
  Geometry g = geometry_of(x, y, params);
  maxpool_forward_kernel<<<grid_for(y.numel()), kThreadsPerBlock, 0, stream_of(ctx)>>>(
      x.data<float>(), y.data<float>(), indices.data<int64_t>(), g);
  TL_CUDA_CHECK_LAUNCH("maxpool_forward_kernel");
}

void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx, const Pool2dParams& params) {
  check_f32("maxpool2d_backward", dy);
  if (dx.numel() == 0) return;
  Geometry g = geometry_of(dx, dy, params);
  maxpool_backward_gather_kernel<<<grid_for(dx.numel()), kThreadsPerBlock, 0, stream_of(ctx)>>>(
      dy.data<float>(), indices.data<int64_t>(), dx.data<float>(), g);
  TL_CUDA_CHECK_LAUNCH("maxpool_backward_gather_kernel");
}

void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx) {
  check_f32("maxpool2d_backward", dy);
  if (dx.numel() == 0) return;
  Geometry g = geometry_of(dx, dy);
  maxpool_backward_ordered_scatter_kernel<<<grid_for(g.planes * kWarp), kThreadsPerBlock, 0, stream_of(ctx)>>>(
      dy.data<float>(), indices.data<int64_t>(), dx.data<float>(), g.planes, g.h * g.w, g.oh * g.ow);
  TL_CUDA_CHECK_LAUNCH("maxpool_backward_ordered_scatter_kernel");
}

void avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, const Pool2dParams& params) {
  check_f32("avgpool2d_forward", x);
  if (y.numel() == 0) return;
  avgpool_forward_kernel<<<grid_for(y.numel()), kThreadsPerBlock, 0, stream_of(ctx)>>>(
      x.data<float>(), y.data<float>(), geometry_of(x, y, params));
  TL_CUDA_CHECK_LAUNCH("avgpool_forward_kernel");
}

void avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dParams& params) {
  check_f32("avgpool2d_backward", dy);
  if (dx.numel() == 0) return;
  avgpool_backward_gather_kernel<<<grid_for(dx.numel()), kThreadsPerBlock, 0, stream_of(ctx)>>>(
      dy.data<float>(), dx.data<float>(), geometry_of(dx, dy, params));
  TL_CUDA_CHECK_LAUNCH("avgpool_backward_gather_kernel");
}

void adaptive_avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y) {
  check_f32("adaptive_avgpool2d_forward", x);
  if (y.numel() == 0) return;
  Geometry g = geometry_of(x, y);
  if (g.oh == 1 && g.ow == 1) {
    global_avgpool_forward_kernel<<<grid_for(g.planes * kWarp), kThreadsPerBlock, 0, stream_of(ctx)>>>(
        x.data<float>(), y.data<float>(), g.planes, g.h * g.w);
    TL_CUDA_CHECK_LAUNCH("global_avgpool_forward_kernel");
    return;
  }
  adaptive_avgpool_forward_kernel<<<grid_for(y.numel()), kThreadsPerBlock, 0, stream_of(ctx)>>>(
      x.data<float>(), y.data<float>(), g);
  TL_CUDA_CHECK_LAUNCH("adaptive_avgpool_forward_kernel");
}

void adaptive_avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  check_f32("adaptive_avgpool2d_backward", dy);
  if (dx.numel() == 0) return;
  adaptive_avgpool_backward_gather_kernel<<<grid_for(dx.numel()), kThreadsPerBlock, 0, stream_of(ctx)>>>(
      dy.data<float>(), dx.data<float>(), geometry_of(dx, dy));
  TL_CUDA_CHECK_LAUNCH("adaptive_avgpool_backward_gather_kernel");
}

}  // namespace tl::cuda
