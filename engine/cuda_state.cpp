#include "engine/cuda_state.h"

#include "engine/cuda_check.h"
#include "engine/error.h"

namespace tl {

CudaState::CudaState(int device_) : device(device_) {
  TL_CUDA_CHECK(cudaSetDevice(device));
  TL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  allocator = std::make_shared<CudaMallocAllocator>(device);
}

CudaState::~CudaState() {
  // Destructors must not throw: release quietly.
  if (workspace_) allocator->release(workspace_, workspace_bytes_);
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
  // Work already queued may still read the old buffer: the stream orders the release after it
  // only for stream-ordered allocators, so wait here (growth happens a few times per run).
  TL_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (workspace_) allocator->release(workspace_, workspace_bytes_);
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  workspace_ = allocator->allocate(bytes);
  workspace_bytes_ = bytes;
  return workspace_;
}

void* CudaMallocAllocator::allocate(size_t bytes) {
  void* ptr = nullptr;
  cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error so later calls work
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw Error(str("out of device memory: asked for ", bytes, " bytes, ", free_bytes, " of ", total_bytes,
                    " free (lower --batch-size)"));
  }
  TL_CUDA_CHECK(status);
  return ptr;
}

void CudaMallocAllocator::release(void* ptr, size_t) { cudaFree(ptr); }

}  // namespace tl
