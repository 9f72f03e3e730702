#pragma once
// Pieces shared by the BatchNorm CUDA kernels (batchnorm_forward.cu, batchnorm_backward.cu).
//
// Per-channel reductions run on a 2-D grid: blockIdx.y walks the channels, blockIdx.x cuts one
// channel's N*H*W values into slices of contiguous (n, h*w) order, so a few channels with many
// values still fill the GPU. Each block writes one double partial per sum; a second kernel (one
// warp per channel) adds a channel's partials in a fixed order. No atomics: results do not change
// from run to run. Sums are double per thread (one F32->F64 conversion and two FP64 operations
// per value: far below an H100's FP64 rate, a cost only on GPUs with 1/64-rate FP64).
//
// Loads are float4 when H*W % 4 == 0 and every pointer is 16-byte aligned (a float4 then never
// straddles two planes), scalar otherwise. Either way a thread walks its elements with an
// incremental (column, address) or (column, channel) cursor, so there is no division per element.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/tensor.h"
#include "kernels/cuda/launch.h"

namespace tl::cuda::bn {

constexpr int kWarpSize = 32;
constexpr int kWarps = kThreadsPerBlock / kWarpSize;
static_assert(kThreadsPerBlock % kWarpSize == 0 && kWarps <= kWarpSize, "block_sum2 reduces warps in one warp");
// Independent loads a thread issues before using any: enough bytes in flight to cover DRAM latency
// even with scalar loads.
constexpr int kUnroll = 4;
// Slicing: about this many waves of resident reduction blocks in all, so that a few channels with
// many values still fill the GPU and the last, partial wave is a small part of the time...
constexpr int64_t kReductionWaves = 4;
// ...but at least this many loads per block (8 per thread): fewer would spend more time on
// partials than on data.
constexpr int64_t kMinUnitsPerSlice = 8 * kThreadsPerBlock;
// gridDim.y's limit; slices (gridDim.x) are kept under it too.
constexpr int64_t kMaxGridY = 65535;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A per-channel tensor ([C], F32 or F64, or absent) read and written as double on the device.
struct PerChannelRef {
  float* f = nullptr;
  double* d = nullptr;
  __host__ __device__ bool present() const { return f != nullptr || d != nullptr; }
  __device__ double get(int64_t c) const { return f ? static_cast<double>(f[c]) : d[c]; }
  __device__ void set(int64_t c, double v) const {
    if (f) f[c] = static_cast<float>(v);
    else d[c] = v;
  }
  __device__ void add(int64_t c, double v) const { set(c, get(c) + v); }
};

inline PerChannelRef per_channel(const Tensor* t) {
  PerChannelRef r;
  if (t && t->defined()) {
    if (t->dtype() == DType::F32) r.f = t->data<float>();
    else r.d = t->data<double>();
  }
  return r;
}
inline PerChannelRef per_channel(const Tensor& t) { return per_channel(&t); }

// What the float elementwise kernels apply to every value of one channel:
//   centered = (x - mean_hi) - mean_lo     (mean = mean_hi + mean_lo to ~48 bits, so x - mean
//                                           keeps full float precision even when |mean| >> std)
//   forward:     y  = centered * scale + shift      (slope unused, 0)
//   eval dx:     dx = dy * scale
// (The training dx pass cancels terms and runs in double: batchnorm_backward.cu.)
struct ChannelAffine {
  float mean_hi, mean_lo, scale, shift, slope;
};
constexpr int64_t kAffineFloats = sizeof(ChannelAffine) / sizeof(float);
static_assert(sizeof(ChannelAffine) == 5 * sizeof(float), "ChannelAffine lives in an F32 tensor");

__device__ inline void split_mean(double mean, ChannelAffine& a) {
  a.mean_hi = static_cast<float>(mean);
  a.mean_lo = static_cast<float>(mean - static_cast<double>(a.mean_hi));
}

__device__ inline float centered(float x, const ChannelAffine& a) { return (x - a.mean_hi) - a.mean_lo; }

// float4 loads need H*W % 4 == 0 (a vector stays inside one plane) and 16-byte aligned pointers.
inline bool can_use_float4(int64_t hw, std::initializer_list<const float*> pointers) {
  if (hw % 4 != 0) return false;
  for (const float* p : pointers)
    if (p && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Apply f to each float of a vector (float or float4).
template <class F> __device__ inline void for_each_lane(float v, F&& f) { f(v); }
template <class F> __device__ inline void for_each_lane(const float4& v, F&& f) {
  f(v.x);
  f(v.y);
  f(v.z);
  f(v.w);
}
template <class F> __device__ inline void for_each_lane2(float a, float b, F&& f) { f(a, b); }
template <class F> __device__ inline void for_each_lane2(const float4& a, const float4& b, F&& f) {
  f(a.x, b.x);
  f(a.y, b.y);
  f(a.z, b.z);
  f(a.w, b.w);
}
// out = f(v) lane by lane.
template <class F> __device__ inline float map_lanes(float v, F&& f) { return f(v); }
template <class F> __device__ inline float4 map_lanes(const float4& v, F&& f) {
  return make_float4(f(v.x), f(v.y), f(v.z), f(v.w));
}
template <class F> __device__ inline float map_lanes2(float a, float b, F&& f) { return f(a, b); }
template <class F> __device__ inline float4 map_lanes2(const float4& a, const float4& b, F&& f) {
  return make_float4(f(a.x, b.x), f(a.y, b.y), f(a.z, b.z), f(a.w, b.w));
}

// ---- Per-channel reduction over slices -------------------------------------------------------

// Geometry of a channel reduction in units of Vec (V floats). Unit u of channel c is row
// n = u / hwu, column u % hwu, at Vec index (n * channels + c) * hwu + u % hwu.
struct ReductionPlan {
  int64_t hw;          // floats per plane (H*W)
  int64_t hwu;         // units per plane (H*W / V)
  int64_t channels;    // C
  int64_t units;       // units per channel (N * hwu)
  int64_t slices;      // blocks per channel
  int64_t per_slice;   // units per slice (the last may have fewer)
  // A thread moves kThreadsPerBlock units forward: step_cols columns and whole rows.
  int64_t step_cols;   // kThreadsPerBlock % hwu
  int64_t step_addr;   // (kThreadsPerBlock / hwu) * channels * hwu + step_cols
  int64_t wrap_addr;   // extra address step when the column wraps into the next row: (channels - 1) * hwu
};

// resident_blocks: how many blocks of the reduction kernel the whole GPU runs at once.
inline ReductionPlan plan_reduction(const Tensor& x, int vector_width, int64_t resident_blocks) {
  ReductionPlan p{};
  p.hw = x.size(2) * x.size(3);
  p.hwu = p.hw / vector_width;
  p.channels = x.size(1);
  p.units = x.size(0) * p.hwu;
  int64_t wanted = ceil_div(p.units, kMinUnitsPerSlice);
  int64_t fill = std::max<int64_t>(1, kReductionWaves * resident_blocks / p.channels);
  p.slices = std::clamp<int64_t>(std::min(wanted, fill), 1, kMaxGridY);
  p.per_slice = ceil_div(p.units, p.slices);
  p.slices = ceil_div(p.units, p.per_slice);  // no empty slice
  p.step_cols = kThreadsPerBlock % p.hwu;
  p.step_addr = (kThreadsPerBlock / p.hwu) * p.channels * p.hwu + p.step_cols;
  p.wrap_addr = (p.channels - 1) * p.hwu;
  return p;
}

// Blocks of `kernel` (launched with kThreadsPerBlock threads) resident on the whole device at once.
template <class Kernel>
int64_t resident_blocks(Context& ctx, Kernel kernel) {
  int per_sm = 0, sms = 0;
  TL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreadsPerBlock, 0));
  TL_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx.cuda().device));
  return std::max(1, per_sm) * static_cast<int64_t>(std::max(1, sms));
}

inline dim3 reduction_grid(const ReductionPlan& p) {
  return dim3(static_cast<unsigned>(p.slices), static_cast<unsigned>(std::min(p.channels, kMaxGridY)));
}

// The units of slice `slice` of channel c that thread t visits: begin + t, begin + t + 256, ...
struct SliceCursor {
  int64_t unit = 0, end = 0;  // position within the channel and the slice's end
  int64_t col = 0, addr = 0;  // column within the row and Vec index in the tensor

  __device__ SliceCursor(const ReductionPlan& p, int64_t c, int64_t slice, int t) {
    int64_t begin = slice * p.per_slice;
    end = min(begin + p.per_slice, p.units);
    unit = begin + t;
    if (unit < end) {
      int64_t row = unit / p.hwu;
      col = unit - row * p.hwu;
      addr = (row * p.channels + c) * p.hwu + col;
    }
  }
  // Both steps are < hwu, so one wrap at most.
  __device__ void advance(const ReductionPlan& p) {
    unit += kThreadsPerBlock;
    col += p.step_cols;
    addr += p.step_addr;
    if (col >= p.hwu) {
      col -= p.hwu;
      addr += p.wrap_addr;
    }
  }
};

__device__ inline double warp_sum(double v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sums a and b over the block; the totals are valid in thread 0. Every thread must call it.
// `shared` holds 2 * kWarps doubles; the caller syncs before reusing it.
__device__ inline void block_sum2(double& a, double& b, double* shared) {
  int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  a = warp_sum(a);
  b = warp_sum(b);
  if (lane == 0) {
    shared[warp] = a;
    shared[kWarps + warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = lane < kWarps ? shared[lane] : 0.0;
    b = lane < kWarps ? shared[kWarps + lane] : 0.0;
    a = warp_sum(a);
    b = warp_sum(b);
  }
}

// Adds channel c's partial pairs (launched with one warp per channel, c = blockIdx.x); the totals
// are valid in lane 0. Partials are laid out [channels][slices][2].
__device__ inline void sum_partials(const double* partials, int64_t slices, int64_t c, double& a, double& b) {
  a = 0;
  b = 0;
  const double* row = partials + 2 * c * slices;
  for (int64_t s = threadIdx.x; s < slices; s += kWarpSize) {
    a += row[2 * s];
    b += row[2 * s + 1];
  }
  a = warp_sum(a);
  b = warp_sum(b);
}

// ---- Elementwise walk over the whole tensor ----------------------------------------------------

// Grid-stride walk over all units of an [N,C,H,W] tensor that tracks each unit's channel without
// dividing: unit u is in plane u / hwu, channel (u / hwu) % channels.
struct ElementwisePlan {
  int64_t units;       // numel / V
  int64_t hwu;         // units per plane
  int64_t channels;
  unsigned blocks;
  int64_t stride;      // blocks * kThreadsPerBlock
  int64_t step_cols;   // stride % hwu
  int64_t step_c;      // (stride / hwu) % channels
};

inline ElementwisePlan plan_elementwise(const Tensor& x, int vector_width) {
  ElementwisePlan p{};
  p.units = x.numel() / vector_width;
  p.hwu = x.size(2) * x.size(3) / vector_width;
  p.channels = x.size(1);
  p.blocks = grid_for(ceil_div(p.units, kUnroll));
  p.stride = static_cast<int64_t>(p.blocks) * kThreadsPerBlock;
  p.step_cols = p.stride % p.hwu;
  p.step_c = (p.stride / p.hwu) % p.channels;
  return p;
}

struct ElementwiseCursor {
  int64_t unit, col, c;
  __device__ explicit ElementwiseCursor(const ElementwisePlan& p) {
    unit = blockIdx.x * int64_t(kThreadsPerBlock) + threadIdx.x;
    int64_t plane = unit / p.hwu;
    col = unit - plane * p.hwu;
    c = plane % p.channels;
  }
  // col + step_cols < 2 * hwu and c + step_c + 1 < 2 * channels: one correction each.
  __device__ void advance(const ElementwisePlan& p) {
    unit += p.stride;
    col += p.step_cols;
    c += p.step_c;
    if (col >= p.hwu) {
      col -= p.hwu;
      ++c;
    }
    if (c >= p.channels) c -= p.channels;
  }
};

}  // namespace tl::cuda::bn

namespace tl::cuda::bn {
// Writes ChannelAffine {running_mean split, gamma / sqrt(running_var + eps), beta (0 when absent),
// slope 0} for every channel: what eval normalisation and the eval dx need. Defined in
// batchnorm_forward.cu.
void launch_eval_affine(Context& ctx, const Tensor& gamma, const Tensor* beta, const Tensor& running_mean,
                        const Tensor& running_var, double eps, ChannelAffine* affine);
}  // namespace tl::cuda::bn
