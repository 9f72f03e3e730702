#include "engine/cuda_state.h"

#include "engine/cuda_check.h"
#include "engine/error.h"

namespace tl {

CudaState::CudaState(int device_) : device(device_) {
  TL_CUDA_CHECK(cudaSetDevice(device));
  TL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  allocator = std::make_shared<CachingAllocator>(cuda_raw_device_memory());
}

CudaState::~CudaState() {
  // Destructors must not throw: release quietly, once the queued work that may use it is done.
  if (stream) cudaStreamSynchronize(stream);
  // The cuDNN plans (descriptors, the ones vector) go first, before the handles they were made with;
  // their device memory returns to the allocator, which outlives this body.
  conv_algorithms.reset();
  try {
    if (workspace_) allocator->release(workspace_, workspace_bytes_);
  } catch (...) {
  }
  for (PinnedStagingBuffer& buffer : staging_) {
    if (buffer.host) cudaFreeHost(buffer.host);
    if (buffer.copy_done) cudaEventDestroy(buffer.copy_done);
  }
  if (cudnn_) cudnnDestroy(cudnn_);
  if (cublas_) cublasDestroy(cublas_);
  if (stream) cudaStreamDestroy(stream);
}

cublasHandle_t CudaState::cublas() {
  if (!cublas_) {
    TL_CUDA_CHECK(cublasCreate(&cublas_));
    TL_CUDA_CHECK(cublasSetStream(cublas_, stream));
  }
  return cublas_;
}

cudnnHandle_t CudaState::cudnn() {
  if (!cudnn_) {
    TL_CUDA_CHECK(cudnnCreate(&cudnn_));
    TL_CUDA_CHECK(cudnnSetStream(cudnn_, stream));
  }
  return cudnn_;
}

void* CudaState::workspace(size_t bytes) {
  if (bytes <= workspace_bytes_) return workspace_;
  // The old buffer goes back to the caching allocator at once, without waiting: work already queued
  // that reads it runs before anything queued by the block's next owner (stream order, see
  // caching_allocator.cpp). Released first so that an out-of-memory retry can reclaim it; if the
  // allocation throws, the workspace is simply empty.
  if (workspace_) allocator->release(workspace_, workspace_bytes_);
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  workspace_ = allocator->allocate(bytes);
  workspace_bytes_ = bytes;
  return workspace_;
}

PinnedStagingBuffer& CudaState::next_staging_buffer(size_t bytes) {
  PinnedStagingBuffer& buffer = staging_[next_staging_];
  next_staging_ = 1 - next_staging_;
  if (!buffer.copy_done) TL_CUDA_CHECK(cudaEventCreateWithFlags(&buffer.copy_done, cudaEventDisableTiming));
  // The device may still be reading the last data staged here (an event never recorded is complete).
  TL_CUDA_CHECK(cudaEventSynchronize(buffer.copy_done));
  if (buffer.bytes >= bytes) return buffer;
  void* old_host = buffer.host;  // forgotten first, so that a failed free is not freed again later
  buffer.host = nullptr;
  buffer.bytes = 0;
  if (old_host) TL_CUDA_CHECK(cudaFreeHost(old_host));
  cudaError_t status = cudaHostAlloc(&buffer.host, bytes, cudaHostAllocDefault);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it so that the next checked call does not report it
    buffer.host = nullptr;
    throw Error(str("out of pinned host memory: asked for ", bytes, " bytes for the host-to-device staging buffer"));
  }
  TL_CUDA_CHECK(status);
  buffer.bytes = bytes;
  return buffer;
}

RawDeviceMemory cuda_raw_device_memory() {
  RawDeviceMemory raw;
  raw.allocate = [](size_t bytes) -> void* {
    void* ptr = nullptr;
    cudaError_t status = cudaMalloc(&ptr, bytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky: clear it so that later launch checks do not report it
      return nullptr;
    }
    TL_CUDA_CHECK(status);
    return ptr;
  };
  // Quiet: frees also run from destructors; a failure here is a sticky error that the next checked
  // call reports.
  raw.free = [](void* ptr) { cudaFree(ptr); };
  raw.synchronize = [] { TL_CUDA_CHECK(cudaDeviceSynchronize()); };
  raw.memory_info = [](size_t& free_bytes, size_t& total_bytes) {
    TL_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  };
  return raw;
}

}  // namespace tl
