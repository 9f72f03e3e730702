#pragma once
// The CUDA half of a Context: device, stream, cuBLAS and cuDNN handles (made on first use) and
// the device allocator. Only CUDA code includes this header.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <memory>

#include "engine/cudnn_algorithm_cache.h"
#include "engine/storage.h"

namespace tl {

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

  int device = 0;
  cudaStream_t stream = nullptr;
  std::shared_ptr<DeviceAllocator> allocator;
  // Owned here so that it dies with the handles it was found for; made by the conv code on first use.
  std::shared_ptr<CudnnAlgorithmCache> conv_algorithms;

 private:
  cublasHandle_t cublas_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

// Plain cudaMalloc/cudaFree; the caching allocator replaces it (CUDA backend I).
class CudaMallocAllocator : public DeviceAllocator {
 public:
  explicit CudaMallocAllocator(int device) : device_(device) {}
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) override;

 private:
  int device_;
};

}  // namespace tl
