#pragma once
// cuDNN descriptors for the reference side of tl bench --kernels, owned (destroyed on scope exit). The bench calls
// cuDNN's own BatchNorm, pooling, activation, tensor-op and softmax routines directly with these, on the context's
// cuDNN handle (and so its stream), to put the library's time next to ours on the same tensors.
#include <cudnn.h>

#include <cstdint>

#include "engine/cuda_check.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace tl::app::bench {

// F32 NCHW; a 2-d [N,C] shape is described as [N,C,1,1].
class CudnnTensor {
 public:
  explicit CudnnTensor(const Shape& shape) {
    TL_CHECK(shape.size() == 4 || shape.size() == 2, "CudnnTensor: shape ", shape_str(shape), " is not 2-d or 4-d");
    TL_CUDA_CHECK(cudnnCreateTensorDescriptor(&desc_));
    int n = int(shape[0]), c = int(shape[1]), h = shape.size() == 4 ? int(shape[2]) : 1;
    int w = shape.size() == 4 ? int(shape[3]) : 1;
    TL_CUDA_CHECK(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  }
  // The [1,C,1,1] per-channel descriptor cuDNN's spatial BatchNorm derives from x's.
  static CudnnTensor batchnorm_params(const CudnnTensor& x) {
    CudnnTensor out;
    TL_CUDA_CHECK(cudnnCreateTensorDescriptor(&out.desc_));
    TL_CUDA_CHECK(cudnnDeriveBNTensorDescriptor(out.desc_, x.get(), CUDNN_BATCHNORM_SPATIAL));
    return out;
  }
  CudnnTensor(CudnnTensor&& other) noexcept : desc_(other.desc_) { other.desc_ = nullptr; }
  CudnnTensor(const CudnnTensor&) = delete;
  CudnnTensor& operator=(const CudnnTensor&) = delete;
  ~CudnnTensor() {
    if (desc_) cudnnDestroyTensorDescriptor(desc_);
  }
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  CudnnTensor() = default;
  cudnnTensorDescriptor_t desc_ = nullptr;
};

class CudnnPooling {
 public:
  CudnnPooling(cudnnPoolingMode_t mode, int window, int stride, int pad) {
    TL_CUDA_CHECK(cudnnCreatePoolingDescriptor(&desc_));
    TL_CUDA_CHECK(
        cudnnSetPooling2dDescriptor(desc_, mode, CUDNN_PROPAGATE_NAN, window, window, pad, pad, stride, stride));
  }
  CudnnPooling(const CudnnPooling&) = delete;
  CudnnPooling& operator=(const CudnnPooling&) = delete;
  ~CudnnPooling() { cudnnDestroyPoolingDescriptor(desc_); }
  cudnnPoolingDescriptor_t get() const { return desc_; }

 private:
  cudnnPoolingDescriptor_t desc_ = nullptr;
};

class CudnnRelu {
 public:
  CudnnRelu() {
    TL_CUDA_CHECK(cudnnCreateActivationDescriptor(&desc_));
    TL_CUDA_CHECK(cudnnSetActivationDescriptor(desc_, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
  }
  CudnnRelu(const CudnnRelu&) = delete;
  CudnnRelu& operator=(const CudnnRelu&) = delete;
  ~CudnnRelu() { cudnnDestroyActivationDescriptor(desc_); }
  cudnnActivationDescriptor_t get() const { return desc_; }

 private:
  cudnnActivationDescriptor_t desc_ = nullptr;
};

class CudnnAdd {
 public:
  CudnnAdd() {
    TL_CUDA_CHECK(cudnnCreateOpTensorDescriptor(&desc_));
    TL_CUDA_CHECK(cudnnSetOpTensorDescriptor(desc_, CUDNN_OP_TENSOR_ADD, CUDNN_DATA_FLOAT, CUDNN_PROPAGATE_NAN));
  }
  CudnnAdd(const CudnnAdd&) = delete;
  CudnnAdd& operator=(const CudnnAdd&) = delete;
  ~CudnnAdd() { cudnnDestroyOpTensorDescriptor(desc_); }
  cudnnOpTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnOpTensorDescriptor_t desc_ = nullptr;
};

}  // namespace tl::app::bench
