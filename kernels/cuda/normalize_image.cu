// CUDA twin of normalize_image. A raw pixel has only 256 values, so the host evaluates
// normalized_pixel() once per (output channel, value) into a 3x256 table that travels as a kernel
// parameter; each block copies it to shared memory and the kernel is a pure gather, bit-identical to
// the CPU twin by construction and free of any device rounding question (no FMA contraction, no
// division). When H*W % 4 == 0 and the pointers allow it, a thread converts four pixels: three 32-bit
// loads of the 12 HWC bytes and one float4 store per output channel; otherwise one pixel per thread.
#include <algorithm>
#include <cstdint>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/cuda/launch.h"
#include "kernels/normalize_image.h"

namespace tl::cuda {

namespace {

constexpr int kValues = 256;

struct NormalizeTable {
  float value[3 * kValues];  // [output channel][raw value]
};

// Input channel of output channel c, a compile-time constant in the kernels so that the unpacked
// bytes stay in registers.
template <bool kBgr>
__device__ __forceinline__ constexpr int source_channel(int c) { return kBgr ? 2 - c : c; }

// Enough blocks to fill the GPU; every block pays the 3 KB table copy once, so no more than that.
constexpr unsigned kMaxBlocks = 4096;

__device__ void load_table(const NormalizeTable& table, float* shared) {
  for (int i = threadIdx.x; i < 3 * kValues; i += blockDim.x) shared[i] = table.value[i];
  __syncthreads();
}

// One pixel per thread: pixel p of the whole batch is n = p / plane, hw = p % plane.
template <bool kBgr>
__global__ void normalize_pixel_kernel(const __grid_constant__ NormalizeTable table, const uint8_t* pixels,
                                       float* out, int64_t count, int64_t plane) {
  __shared__ float lut[3 * kValues];
  load_table(table, lut);
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < count; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = p / plane, hw = p - n * plane;
    const uint8_t* in = pixels + p * 3;
    float* o = out + n * 3 * plane + hw;
#pragma unroll
    for (int c = 0; c < 3; ++c) o[c * plane] = lut[c * kValues + in[source_channel<kBgr>(c)]];
  }
}

// Four pixels per thread (plane % 4 == 0, so a group never straddles two images): group g covers
// pixels 4g..4g+3, i.e. bytes 12g..12g+11 = three little-endian 32-bit words.
template <bool kBgr>
__global__ void normalize_quad_kernel(const __grid_constant__ NormalizeTable table, const uint32_t* words,
                                      float* out, int64_t groups, int64_t plane) {
  __shared__ float lut[3 * kValues];
  load_table(table, lut);
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t word[3] = {words[3 * g], words[3 * g + 1], words[3 * g + 2]};
    auto byte = [&](int i) { return (word[i / 4] >> (8 * (i % 4))) & 0xffu; };  // byte i of the 12
    const int64_t first = 4 * g, n = first / plane, hw = first - n * plane;
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const int s = source_channel<kBgr>(c);
      const float* row = lut + c * kValues;
      float4 v = make_float4(row[byte(s)], row[byte(3 + s)], row[byte(6 + s)], row[byte(9 + s)]);
      *reinterpret_cast<float4*>(out + (n * 3 + c) * plane + hw) = v;
    }
  }
}

}  // namespace

void normalize_image(Context& ctx, const Tensor& pixels, const NormalizeSpec& spec, Tensor& out) {
  TL_CHECK(pixels.is_cuda() && pixels.dtype() == DType::U8 && out.is_cuda() && out.dtype() == DType::F32,
           "normalize_image: CUDA kernel needs U8 pixels and F32 out on CUDA, got ", pixels.describe(), " and ",
           out.describe());
  const int64_t count = pixels.numel() / 3, plane = pixels.size(1) * pixels.size(2);
  if (count == 0) return;
  NormalizeTable table;
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < kValues; ++v) table.value[c * kValues + v] = normalized_pixel(spec, c, uint8_t(v));
  const bool bgr = spec.order == ChannelOrder::BGR;
  const uint8_t* in = pixels.data<uint8_t>();
  float* dst = out.data<float>();
  cudaStream_t stream = ctx.cuda().stream;
  const bool quads = plane % 4 == 0 && reinterpret_cast<uintptr_t>(in) % 4 == 0 &&
                     reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  if (quads) {
    const int64_t groups = count / 4;
    const unsigned blocks = std::min(grid_for(groups), kMaxBlocks);
    const uint32_t* words = reinterpret_cast<const uint32_t*>(in);
    if (bgr) normalize_quad_kernel<true><<<blocks, kThreadsPerBlock, 0, stream>>>(table, words, dst, groups, plane);
    else normalize_quad_kernel<false><<<blocks, kThreadsPerBlock, 0, stream>>>(table, words, dst, groups, plane);
    TL_CUDA_CHECK_LAUNCH("normalize_quad_kernel");
  } else {
    const unsigned blocks = std::min(grid_for(count), kMaxBlocks);
    if (bgr) normalize_pixel_kernel<true><<<blocks, kThreadsPerBlock, 0, stream>>>(table, in, dst, count, plane);
    else normalize_pixel_kernel<false><<<blocks, kThreadsPerBlock, 0, stream>>>(table, in, dst, count, plane);
    TL_CUDA_CHECK_LAUNCH("normalize_pixel_kernel");
  }
}

}  // namespace tl::cuda
