#pragma once
// One checking macro for every CUDA runtime, cuBLAS and cuDNN call: it evaluates the call once and
// throws tl::Error naming the call, its status, the file and the line.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

namespace tl {

void cuda_check(cudaError_t status, const char* call, const char* file, int line);
void cuda_check(cublasStatus_t status, const char* call, const char* file, int line);
void cuda_check(cudnnStatus_t status, const char* call, const char* file, int line);

}  // namespace tl

#define TL_CUDA_CHECK(call) ::tl::cuda_check((call), #call, __FILE__, __LINE__)
// After a kernel launch: launch-configuration errors surface here, not at some later call.
#define TL_CUDA_CHECK_LAUNCH(kernel_name) ::tl::cuda_check(cudaGetLastError(), kernel_name, __FILE__, __LINE__)
