#include "engine/host_upload.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/parallel.h"

namespace tl {

namespace {
// Large tensors go through in pieces of this size, alternating the two staging buffers: pinned memory
// stays bounded (2 x 32 MiB) and staging piece k+1 overlaps the device copy of piece k.
constexpr size_t kStagingChunkBytes = size_t(32) << 20;
// Pieces of the host-side memcpy handed to the Context's threads.
constexpr size_t kMemcpyPieceBytes = size_t(1) << 20;

void copy_to_pinned(Context& ctx, void* pinned, const void* source, size_t bytes) {
  auto* dst = static_cast<uint8_t*>(pinned);
  const auto* src = static_cast<const uint8_t*>(source);
  const int64_t pieces = static_cast<int64_t>((bytes + kMemcpyPieceBytes - 1) / kMemcpyPieceBytes);
  parallel_for(ctx, pieces, [&](int64_t piece) {
    const size_t begin = static_cast<size_t>(piece) * kMemcpyPieceBytes;
    std::memcpy(dst + begin, src + begin, std::min(kMemcpyPieceBytes, bytes - begin));
  });
}
}  // namespace

Tensor upload_async(Context& ctx, const Tensor& host) {
  TL_CHECK(host.defined(), "upload_async: the host tensor is undefined");
  TL_CHECK(host.device() == Device::CPU, "upload_async: expects a CPU tensor, got ", host.describe());
  Tensor device = Tensor::empty(ctx, host.shape(), host.dtype(), Device::CUDA);
  const size_t total = host.nbytes();
  if (total == 0) return device;
  CudaState& cuda = ctx.cuda();
  const auto* src = static_cast<const uint8_t*>(host.raw());
  auto* dst = static_cast<uint8_t*>(device.raw());
  // Every buffer is sized for a whole piece (or the whole tensor when smaller): the short last piece of
  // one upload must not leave a buffer that the next upload has to grow again.
  const size_t buffer_bytes = std::min(total, kStagingChunkBytes);
  for (size_t done = 0; done < total;) {
    const size_t piece = std::min(kStagingChunkBytes, total - done);
    // Waits until the device has finished copying out of this buffer the last time it was used.
    PinnedStagingBuffer& staging = cuda.next_staging_buffer(buffer_bytes);
    copy_to_pinned(ctx, staging.host, src + done, piece);
    TL_CUDA_CHECK(cudaMemcpyAsync(dst + done, staging.host, piece, cudaMemcpyHostToDevice, cuda.stream));
    TL_CUDA_CHECK(cudaEventRecord(staging.copy_done, cuda.stream));
    done += piece;
  }
  return device;
}

}  // namespace tl
