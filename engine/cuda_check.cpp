#include "engine/cuda_check.h"

#include "engine/error.h"

namespace tl {

void cuda_check(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  throw Error(str("CUDA error ", static_cast<int>(status), " (", cudaGetErrorString(status), ") in ", call, " at ",
                  file, ":", line));
}

void cuda_check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(str("cuBLAS error ", static_cast<int>(status), " (", cublasGetStatusString(status), ") in ", call,
                  " at ", file, ":", line));
}

void cuda_check(cudnnStatus_t status, const char* call, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  throw Error(str("cuDNN error ", static_cast<int>(status), " (", cudnnGetErrorString(status), ") in ", call,
                  " at ", file, ":", line));
}

}  // namespace tl
