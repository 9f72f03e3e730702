// CUDA twin of the BatchNorm forward (kernels/cpu/batchnorm.cpp is the specification).
//
// Training takes three launches: moment partials per (channel, slice), one warp per channel to
// finish the statistics and update the running ones, then one elementwise normalise pass.
// Statistics are accumulated in double around a per-channel shift (the channel's first value):
//   mean = shift + S1 / n,   sum of squared deviations = S2 - S1^2 / n,   S1 = sum(x - shift),
//   S2 = sum((x - shift)^2).
// S2 = sum_sq_dev + n * (mean - shift)^2, and since the shift is one of the values,
// (shift - mean)^2 <= sum_sq_dev: the subtraction S2 - S1^2/n magnifies S2's rounding error by at
// most n + 1, i.e. loses at most log2(n + 1) of double's 53 bits (19 at ResNet's 401,408 values
// per channel). A channel with mean 1e4 and variance 1e-4 is therefore as accurate as any other;
// the one-pass float E[x^2] - E[x]^2 would lose everything there.
#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/batchnorm.h"
#include "kernels/cuda/batchnorm_common.cuh"
#include "kernels/cuda/check_f32.h"

namespace tl::cuda {

namespace {
using namespace bn;

// partials[c][slice] = {sum(x - shift), sum((x - shift)^2)} over the slice's values.
template <class Vec>
__global__ void bn_moment_partials_kernel(const float* __restrict__ x, ReductionPlan p,
                                          double* __restrict__ partials) {
  __shared__ double shared[2 * kWarps];
  const Vec* xv = reinterpret_cast<const Vec*>(x);
  for (int64_t c = blockIdx.y; c < p.channels; c += gridDim.y) {
    const double shift = static_cast<double>(x[c * p.hw]);  // element (0, c, 0, 0)
    double s1 = 0, s2 = 0;
    auto add = [&](float v) {
      double d = static_cast<double>(v) - shift;
      s1 += d;
      s2 = fma(d, d, s2);
    };
    SliceCursor cur(p, c, blockIdx.x, threadIdx.x);
    while (cur.unit + (kUnroll - 1) * int64_t(kThreadsPerBlock) < cur.end) {
      Vec v[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        v[k] = xv[cur.addr];
        cur.advance(p);
      }
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) for_each_lane(v[k], add);
    }
    for (; cur.unit < cur.end; cur.advance(p)) for_each_lane(xv[cur.addr], add);
    block_sum2(s1, s2, shared);
    if (threadIdx.x == 0) {
      double* out = partials + 2 * (c * p.slices + blockIdx.x);
      out[0] = s1;
      out[1] = s2;
    }
    __syncthreads();  // shared is reused for the next channel
  }
}

struct TrainStatistics {
  PerChannelRef gamma, beta, running_mean, running_var, save_mean, save_invstd;
  double momentum, eps, count;
};

// One warp per channel (c = blockIdx.x): the batch statistics, save_*, the running update and the
// affine the normalise pass applies. Formulas as the CPU twin's, in double.
__global__ void bn_forward_finalize_kernel(const double* __restrict__ partials, const float* __restrict__ x,
                                           ReductionPlan p, TrainStatistics s, ChannelAffine* __restrict__ affine) {
  const int64_t c = blockIdx.x;
  double s1, s2;
  sum_partials(partials, p.slices, c, s1, s2);
  if (threadIdx.x != 0) return;
  const double shift = static_cast<double>(x[c * p.hw]);
  const double mean = shift + s1 / s.count;
  const double sum_sq_dev = fmax(s2 - s1 * (s1 / s.count), 0.0);
  const double invstd = 1.0 / sqrt(sum_sq_dev / s.count + s.eps);  // biased variance normalises
  s.save_mean.set(c, mean);
  s.save_invstd.set(c, invstd);
  const double unbiased_var = sum_sq_dev / (s.count - 1);  // the running estimate is unbiased (PyTorch)
  s.running_mean.set(c, (1 - s.momentum) * s.running_mean.get(c) + s.momentum * mean);
  s.running_var.set(c, (1 - s.momentum) * s.running_var.get(c) + s.momentum * unbiased_var);
  ChannelAffine a;
  split_mean(mean, a);
  a.scale = static_cast<float>(invstd * s.gamma.get(c));
  a.shift = static_cast<float>(s.beta.get(c));
  a.slope = 0.0f;
  affine[c] = a;
}

__global__ void bn_eval_affine_kernel(PerChannelRef gamma, PerChannelRef beta, PerChannelRef running_mean,
                                      PerChannelRef running_var, double eps, int64_t channels,
                                      ChannelAffine* __restrict__ affine) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < channels; c += int64_t(gridDim.x) * blockDim.x) {
    const double invstd = 1.0 / sqrt(running_var.get(c) + eps);
    ChannelAffine a;
    split_mean(running_mean.get(c), a);
    a.scale = static_cast<float>(invstd * gamma.get(c));
    a.shift = beta.present() ? static_cast<float>(beta.get(c)) : 0.0f;
    a.slope = 0.0f;
    affine[c] = a;
  }
}

// y = ((x - mean_hi) - mean_lo) * scale + shift, with the channel's affine.
template <class Vec>
__global__ void bn_normalize_kernel(const float* __restrict__ x, float* __restrict__ y,
                                    const ChannelAffine* __restrict__ affine, ElementwisePlan p) {
  const Vec* xv = reinterpret_cast<const Vec*>(x);
  Vec* yv = reinterpret_cast<Vec*>(y);
  auto normalize = [](const ChannelAffine& a, const Vec& v) {
    return map_lanes(v, [&](float f) { return fmaf(centered(f, a), a.scale, a.shift); });
  };
  ElementwiseCursor cur(p);
  while (cur.unit + (kUnroll - 1) * p.stride < p.units) {
    int64_t unit[kUnroll], channel[kUnroll];
    Vec v[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      unit[k] = cur.unit;
      channel[k] = cur.c;
      v[k] = xv[cur.unit];
      cur.advance(p);
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) yv[unit[k]] = normalize(affine[channel[k]], v[k]);
  }
  for (; cur.unit < p.units; cur.advance(p)) yv[cur.unit] = normalize(affine[cur.c], xv[cur.unit]);
}

template <class Vec>
void launch_normalize(Context& ctx, const Tensor& x, Tensor& y, const ChannelAffine* affine) {
  ElementwisePlan p = plan_elementwise(x, sizeof(Vec) / sizeof(float));
  bn_normalize_kernel<Vec><<<p.blocks, kThreadsPerBlock, 0, ctx.cuda().stream>>>(x.data<float>(), y.data<float>(),
                                                                                affine, p);
  TL_CUDA_CHECK_LAUNCH("bn_normalize_kernel");
}

template <class Vec>
void forward_train(Context& ctx, const Tensor& x, const TrainStatistics& stats, Tensor& y) {
  cudaStream_t stream = ctx.cuda().stream;
  // Cached for the process: one GPU model per process is the norm, and a stale value costs speed only.
  static const int64_t resident = resident_blocks(ctx, bn_moment_partials_kernel<Vec>);
  ReductionPlan p = plan_reduction(x, sizeof(Vec) / sizeof(float), resident);
  Tensor partials = Tensor::empty(ctx, {p.channels * p.slices * 2}, DType::F64, Device::CUDA);
  Tensor affine = Tensor::empty(ctx, {p.channels * kAffineFloats}, DType::F32, Device::CUDA);
  auto* channel_affine = reinterpret_cast<ChannelAffine*>(affine.data<float>());
  bn_moment_partials_kernel<Vec><<<reduction_grid(p), kThreadsPerBlock, 0, stream>>>(x.data<float>(), p,
                                                                                     partials.data<double>());
  TL_CUDA_CHECK_LAUNCH("bn_moment_partials_kernel");
  bn_forward_finalize_kernel<<<static_cast<unsigned>(p.channels), kWarpSize, 0, stream>>>(
      partials.data<double>(), x.data<float>(), p, stats, channel_affine);
  TL_CUDA_CHECK_LAUNCH("bn_forward_finalize_kernel");
  launch_normalize<Vec>(ctx, x, y, channel_affine);
  // partials and affine go back to the allocator here; the stream orders their reuse after these kernels.
}

}  // namespace

namespace bn {
void launch_eval_affine(Context& ctx, const Tensor& gamma, const Tensor* beta, const Tensor& running_mean,
                        const Tensor& running_var, double eps, ChannelAffine* affine) {
  int64_t channels = gamma.numel();
  bn_eval_affine_kernel<<<grid_for(channels), kThreadsPerBlock, 0, ctx.cuda().stream>>>(
      per_channel(gamma), per_channel(beta), per_channel(running_mean), per_channel(running_var), eps, channels,
      affine);
  TL_CUDA_CHECK_LAUNCH("bn_eval_affine_kernel");
}
}  // namespace bn

void batchnorm_forward_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                             Tensor& running_mean, Tensor& running_var, double momentum, double eps, Tensor& y,
                             Tensor& save_mean, Tensor& save_invstd) {
  const char* op = "batchnorm_forward_train";
  check_f32(op, x);
  check_f32(op, y);
  if (x.numel() == 0) return;  // no channels (the dispatcher requires N*H*W > 1)
  TrainStatistics stats{per_channel(gamma),     per_channel(beta),      per_channel(running_mean),
                        per_channel(running_var), per_channel(save_mean), per_channel(save_invstd),
                        momentum,                eps,                    static_cast<double>(x.size(0) * x.size(2) * x.size(3))};
  if (can_use_float4(x.size(2) * x.size(3), {x.data<float>(), y.data<float>()}))
    forward_train<float4>(ctx, x, stats, y);
  else
    forward_train<float>(ctx, x, stats, y);
}

void batchnorm_forward_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                            const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  const char* op = "batchnorm_forward_eval";
  check_f32(op, x);
  check_f32(op, y);
  if (x.numel() == 0) return;
  Tensor affine = Tensor::empty(ctx, {x.size(1) * kAffineFloats}, DType::F32, Device::CUDA);
  auto* channel_affine = reinterpret_cast<ChannelAffine*>(affine.data<float>());
  launch_eval_affine(ctx, gamma, &beta, running_mean, running_var, eps, channel_affine);
  if (can_use_float4(x.size(2) * x.size(3), {x.data<float>(), y.data<float>()}))
    launch_normalize<float4>(ctx, x, y, channel_affine);
  else
    launch_normalize<float>(ctx, x, y, channel_affine);
}

}  // namespace tl::cuda
