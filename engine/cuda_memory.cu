#include <cmath>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_memory.h"
#include "engine/cuda_state.h"
#include "engine/tensor.h"

namespace tl {

namespace {
template <class T>
__global__ void fill_kernel(T* out, int64_t n, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = value;
}

template <class T>
void launch_fill(Context& ctx, T* out, int64_t n, T value) {
  int threads = 256;
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535) blocks = 65535;
  fill_kernel<<<static_cast<unsigned>(blocks), threads, 0, ctx.cuda().stream>>>(out, n, value);
  TL_CUDA_CHECK_LAUNCH("fill_kernel");
}
}  // namespace

void cuda_copy(Context& ctx, void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;  // views of empty tensors may hold null pointers
  cudaStream_t stream = ctx.cuda().stream;
  cudaMemcpyKind kind = cudaMemcpyDefault;
  TL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
  // Host destinations (and pageable host sources) must be complete before the caller touches them.
  if (dst_device == Device::CPU || src_device == Device::CPU) TL_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void cuda_fill(Context& ctx, Tensor& t, double value) {
  if (t.numel() == 0) return;
  // Zero bytes only for +0.0: -0.0 must keep its sign bit in float tensors, as the CPU fill does.
  if (value == 0.0 && !std::signbit(value)) {
    TL_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), ctx.cuda().stream));
    return;
  }
  switch (t.dtype()) {
    case DType::F32: launch_fill(ctx, t.data<float>(), t.numel(), static_cast<float>(value)); break;
    case DType::F64: launch_fill(ctx, t.data<double>(), t.numel(), value); break;
    case DType::I64: launch_fill(ctx, t.data<int64_t>(), t.numel(), static_cast<int64_t>(value)); break;
    case DType::U8: launch_fill(ctx, t.data<uint8_t>(), t.numel(), static_cast<uint8_t>(value)); break;
  }
}

}  // namespace tl
