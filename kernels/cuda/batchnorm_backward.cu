// CUDA twin of the BatchNorm backward (kernels/cpu/batchnorm.cpp is the specification).
//
// Both backward passes need, per channel, sum(dy) and sum(dy * (x - mean)); they are reduced in
// double the way the forward reduces its moments (slices of each channel, partials, one warp per
// channel). Training then applies
//   dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)),  xhat = (x - mean) * invstd
// in one elementwise pass, in double per element: its three terms cancel (exactly so, but for eps,
// when a channel has 2 values), and float would leave errors of an ulp of dy in a much smaller dx.
// Eval's dx = dy * gamma / sqrt(running_var + eps) needs no reduction and no double.
#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/batchnorm.h"
#include "kernels/cuda/batchnorm_common.cuh"
#include "kernels/cuda/check_f32.h"

namespace tl::cuda {

namespace {
using namespace bn;

// partials[c][slice] = {sum(dy), sum(dy * (x - mean))} over the slice's values, in double.
template <class Vec>
__global__ void bn_grad_partials_kernel(const float* __restrict__ x, const float* __restrict__ dy, PerChannelRef mean,
                                        ReductionPlan p, double* __restrict__ partials) {
  __shared__ double shared[2 * kWarps];
  const Vec* xv = reinterpret_cast<const Vec*>(x);
  const Vec* dyv = reinterpret_cast<const Vec*>(dy);
  for (int64_t c = blockIdx.y; c < p.channels; c += gridDim.y) {
    const double m = mean.get(c);
    double sum_dy = 0, sum_dy_dev = 0;
    auto add = [&](float xi, float gi) {
      double g = static_cast<double>(gi);
      sum_dy += g;
      sum_dy_dev = fma(g, static_cast<double>(xi) - m, sum_dy_dev);
    };
    SliceCursor cur(p, c, blockIdx.x, threadIdx.x);
    while (cur.unit + (kUnroll - 1) * int64_t(kThreadsPerBlock) < cur.end) {
      Vec xs[kUnroll], gs[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        xs[k] = xv[cur.addr];
        gs[k] = dyv[cur.addr];
        cur.advance(p);
      }
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) for_each_lane2(xs[k], gs[k], add);
    }
    for (; cur.unit < cur.end; cur.advance(p)) for_each_lane2(xv[cur.addr], dyv[cur.addr], add);
    block_sum2(sum_dy, sum_dy_dev, shared);
    if (threadIdx.x == 0) {
      double* out = partials + 2 * (c * p.slices + blockIdx.x);
      out[0] = sum_dy;
      out[1] = sum_dy_dev;
    }
    __syncthreads();  // shared is reused for the next channel
  }
}

struct GradStatistics {
  PerChannelRef gamma, mean;
  PerChannelRef save_invstd;  // training: invstd as the forward saved it
  PerChannelRef running_var;  // eval: invstd = 1 / sqrt(running_var + eps)
  PerChannelRef dgamma, dbeta;  // accumulated when present
  double eps, count;
};

// What the training dx pass applies to one channel, in double:
//   dx = scale * dy + shift - slope * (x - mean), scale = gamma * invstd,
//   shift = -scale * mean(dy), slope = scale * invstd * mean(dy * xhat).
struct ChannelGrad {
  double mean, scale, shift, slope;
};
constexpr int64_t kChannelGradDoubles = sizeof(ChannelGrad) / sizeof(double);

// One warp per channel (c = blockIdx.x): dgamma += sum(dy * xhat), dbeta += sum(dy), and, when
// grad is not null (training with dx), the channel's ChannelGrad.
__global__ void bn_backward_finalize_kernel(const double* __restrict__ partials, ReductionPlan p, GradStatistics s,
                                            ChannelGrad* __restrict__ grad) {
  const int64_t c = blockIdx.x;
  double sum_dy, sum_dy_dev;
  sum_partials(partials, p.slices, c, sum_dy, sum_dy_dev);
  if (threadIdx.x != 0) return;
  const double invstd =
      s.save_invstd.present() ? s.save_invstd.get(c) : 1.0 / sqrt(s.running_var.get(c) + s.eps);
  const double sum_dy_xhat = sum_dy_dev * invstd;
  if (s.dgamma.present()) s.dgamma.add(c, sum_dy_xhat);
  if (s.dbeta.present()) s.dbeta.add(c, sum_dy);
  if (!grad) return;
  const double scale = s.gamma.get(c) * invstd;
  grad[c] = ChannelGrad{s.mean.get(c), scale, -scale * (sum_dy / s.count), scale * invstd * (sum_dy_xhat / s.count)};
}

template <class Vec>
__global__ void bn_backward_dx_kernel(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                                      const ChannelGrad* __restrict__ channel_grad, ElementwisePlan p) {
  const Vec* xv = reinterpret_cast<const Vec*>(x);
  const Vec* dyv = reinterpret_cast<const Vec*>(dy);
  Vec* dxv = reinterpret_cast<Vec*>(dx);
  auto grad = [](const ChannelGrad& a, const Vec& xs, const Vec& gs) {
    return map_lanes2(xs, gs, [&](float xi, float gi) {
      double d = static_cast<double>(xi) - a.mean;
      return static_cast<float>(fma(static_cast<double>(gi), a.scale, fma(-a.slope, d, a.shift)));
    });
  };
  ElementwiseCursor cur(p);
  while (cur.unit + (kUnroll - 1) * p.stride < p.units) {
    int64_t unit[kUnroll], channel[kUnroll];
    Vec xs[kUnroll], gs[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      unit[k] = cur.unit;
      channel[k] = cur.c;
      xs[k] = xv[cur.unit];
      gs[k] = dyv[cur.unit];
      cur.advance(p);
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) dxv[unit[k]] = grad(channel_grad[channel[k]], xs[k], gs[k]);
  }
  for (; cur.unit < p.units; cur.advance(p)) dxv[cur.unit] = grad(channel_grad[cur.c], xv[cur.unit], dyv[cur.unit]);
}

// Eval: dx = dy * scale (the statistics are constants).
template <class Vec>
__global__ void bn_scale_dy_kernel(const float* __restrict__ dy, float* __restrict__ dx,
                                   const ChannelAffine* __restrict__ affine, ElementwisePlan p) {
  const Vec* dyv = reinterpret_cast<const Vec*>(dy);
  Vec* dxv = reinterpret_cast<Vec*>(dx);
  auto grad = [](const ChannelAffine& a, const Vec& gs) { return map_lanes(gs, [&](float gi) { return gi * a.scale; }); };
  ElementwiseCursor cur(p);
  while (cur.unit + (kUnroll - 1) * p.stride < p.units) {
    int64_t unit[kUnroll], channel[kUnroll];
    Vec gs[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      unit[k] = cur.unit;
      channel[k] = cur.c;
      gs[k] = dyv[cur.unit];
      cur.advance(p);
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) dxv[unit[k]] = grad(affine[channel[k]], gs[k]);
  }
  for (; cur.unit < p.units; cur.advance(p)) dxv[cur.unit] = grad(affine[cur.c], dyv[cur.unit]);
}

// The reduction and its finalisation; grad null means no dx pass follows.
template <class Vec>
void reduce_gradients(Context& ctx, const Tensor& x, const Tensor& dy, const GradStatistics& stats,
                      ChannelGrad* grad) {
  cudaStream_t stream = ctx.cuda().stream;
  // Cached for the process: one GPU model per process is the norm, and a stale value costs speed only.
  static const int64_t resident = resident_blocks(ctx, bn_grad_partials_kernel<Vec>);
  ReductionPlan p = plan_reduction(x, sizeof(Vec) / sizeof(float), resident);
  Tensor partials = Tensor::empty(ctx, {p.channels * p.slices * 2}, DType::F64, Device::CUDA);
  bn_grad_partials_kernel<Vec><<<reduction_grid(p), kThreadsPerBlock, 0, stream>>>(
      x.data<float>(), dy.data<float>(), stats.mean, p, partials.data<double>());
  TL_CUDA_CHECK_LAUNCH("bn_grad_partials_kernel");
  bn_backward_finalize_kernel<<<static_cast<unsigned>(p.channels), kWarpSize, 0, stream>>>(partials.data<double>(), p,
                                                                                           stats, grad);
  TL_CUDA_CHECK_LAUNCH("bn_backward_finalize_kernel");
}

template <class Vec>
void backward_train(Context& ctx, const Tensor& x, const Tensor& dy, const GradStatistics& stats, Tensor* dx) {
  Tensor grad;
  ChannelGrad* channel_grad = nullptr;
  if (dx) {
    grad = Tensor::empty(ctx, {x.size(1) * kChannelGradDoubles}, DType::F64, Device::CUDA);
    channel_grad = reinterpret_cast<ChannelGrad*>(grad.data<double>());
  }
  reduce_gradients<Vec>(ctx, x, dy, stats, channel_grad);
  if (!dx) return;
  ElementwisePlan p = plan_elementwise(x, sizeof(Vec) / sizeof(float));
  bn_backward_dx_kernel<Vec><<<p.blocks, kThreadsPerBlock, 0, ctx.cuda().stream>>>(
      x.data<float>(), dy.data<float>(), dx->data<float>(), channel_grad, p);
  TL_CUDA_CHECK_LAUNCH("bn_backward_dx_kernel");
}

template <class Vec>
void backward_eval(Context& ctx, const Tensor& x, const Tensor& dy, const GradStatistics& stats, const Tensor& gamma,
                   const Tensor& running_mean, const Tensor& running_var, double eps, Tensor* dx) {
  if (stats.dgamma.present() || stats.dbeta.present()) reduce_gradients<Vec>(ctx, x, dy, stats, nullptr);
  if (!dx) return;
  Tensor affine = Tensor::empty(ctx, {x.size(1) * kAffineFloats}, DType::F32, Device::CUDA);
  auto* channel_affine = reinterpret_cast<ChannelAffine*>(affine.data<float>());
  launch_eval_affine(ctx, gamma, nullptr, running_mean, running_var, eps, channel_affine);
  ElementwisePlan p = plan_elementwise(x, sizeof(Vec) / sizeof(float));
  bn_scale_dy_kernel<Vec><<<p.blocks, kThreadsPerBlock, 0, ctx.cuda().stream>>>(dy.data<float>(), dx->data<float>(),
                                                                               channel_affine, p);
  TL_CUDA_CHECK_LAUNCH("bn_scale_dy_kernel");
}

bool use_float4(const Tensor& x, const Tensor& dy, const Tensor* dx) {
  return can_use_float4(x.size(2) * x.size(3), {x.data<float>(), dy.data<float>(), dx ? dx->data<float>() : nullptr});
}

}  // namespace

void batchnorm_backward_train(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                              const Tensor& save_mean, const Tensor& save_invstd, Tensor* dx, Tensor* dgamma,
                              Tensor* dbeta) {
  const char* op = "batchnorm_backward_train";
  check_f32(op, x);
  check_f32(op, dy);
  if (dx) check_f32(op, *dx);
  if (x.numel() == 0 || (!dx && !dgamma && !dbeta)) return;
  GradStatistics stats{per_channel(gamma), per_channel(save_mean), per_channel(save_invstd), PerChannelRef{},
                       per_channel(dgamma), per_channel(dbeta),     0.0,
                       static_cast<double>(x.size(0) * x.size(2) * x.size(3))};
  if (use_float4(x, dy, dx)) backward_train<float4>(ctx, x, dy, stats, dx);
  else backward_train<float>(ctx, x, dy, stats, dx);
}

void batchnorm_backward_eval(Context& ctx, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                             const Tensor& running_mean, const Tensor& running_var, double eps, Tensor* dx,
                             Tensor* dgamma, Tensor* dbeta) {
  const char* op = "batchnorm_backward_eval";
  check_f32(op, x);
  check_f32(op, dy);
  if (dx) check_f32(op, *dx);
  if (x.numel() == 0 || (!dx && !dgamma && !dbeta)) return;
  GradStatistics stats{per_channel(gamma),  per_channel(running_mean), PerChannelRef{}, per_channel(running_var),
                       per_channel(dgamma), per_channel(dbeta),        eps,
                       static_cast<double>(x.size(0) * x.size(2) * x.size(3))};
  if (use_float4(x, dy, dx)) backward_eval<float4>(ctx, x, dy, stats, gamma, running_mean, running_var, eps, dx);
  else backward_eval<float>(ctx, x, dy, stats, gamma, running_mean, running_var, eps, dx);
}

}  // namespace tl::cuda
