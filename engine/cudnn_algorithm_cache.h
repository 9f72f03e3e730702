#pragma once
// cuDNN convolution algorithms, chosen once per shape and kept for the life of the CudaState
// (dlib and darknet do the same): the search is expensive, the answer never changes for a shape.
// The convolution code (kernels/cuda/conv2d*) owns the contents; CudaState only holds one.
namespace tl {

struct CudnnAlgorithmCache;  // defined in kernels/cuda/conv2d_algorithms.h

}  // namespace tl
