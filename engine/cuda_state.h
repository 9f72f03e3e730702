#pragma once
// The CUDA half of a Context: device, stream, cuBLAS and cuDNN handles (made on first use), the
// caching device allocator, the cuDNN workspace and the pinned buffers host uploads go through.
// Only CUDA code includes this header.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <memory>

#include "engine/caching_allocator.h"
#include "engine/cudnn_algorithm_cache.h"
#include "engine/storage.h"

namespace tl {

// A pinned host buffer that upload_async (engine/host_upload.h) stages data in, and the event
// recorded on the stream right after the device copy out of it was queued.
struct PinnedStagingBuffer {
  void* host = nullptr;
  size_t bytes = 0;
  cudaEvent_t copy_done = nullptr;
};

struct CudaState {
  explicit CudaState(int device);
  ~CudaState();
  CudaState(const CudaState&) = delete;
  CudaState& operator=(const CudaState&) = delete;

  cublasHandle_t cublas();
  cudnnHandle_t cudnn();
  // Scratch memory for cuDNN (and any kernel that needs a temporary): one buffer that grows to the
  // largest request and is reused; valid until the next workspace() call on this stream.
  void* workspace(size_t bytes);
  // The next of the two staging buffers, taken in turn, at least `bytes` large, once the device copy
  // last queued out of it has finished, so that the host may overwrite it.
  PinnedStagingBuffer& next_staging_buffer(size_t bytes);

  int device = 0;
  cudaStream_t stream = nullptr;
  // A CachingAllocator over cudaMalloc/cudaFree.
  std::shared_ptr<DeviceAllocator> allocator;
  // Owned here so that it dies with the handles it was found for; made by the conv code on first use.
  std::shared_ptr<CudnnAlgorithmCache> conv_algorithms;

 private:
  cublasHandle_t cublas_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  // Two, so that staging batch k+1 on the host overlaps the device copy of batch k.
  PinnedStagingBuffer staging_[2];
  int next_staging_ = 0;
};

// cudaMalloc and cudaFree as the raw memory under a CachingAllocator: an out-of-memory cudaMalloc
// answers nullptr (its error cleared), any other failure throws.
RawDeviceMemory cuda_raw_device_memory();

}  // namespace tl
