#pragma once
// cuDNN convolution plans: the descriptors of one convolution geometry and the algorithm chosen for
// each direction, found once (cudnnFind*AlgorithmEx, timed on the real buffers) and kept for the
// life of the CudaState, as dlib and darknet do. Only CUDA host code includes this header.
//
// Choice of algorithm, per direction:
// - offered workspace: the largest need of any algorithm for this geometry that stays within
//   kConvWorkspaceCapBytes (so the shared workspace grows only as far as some algorithm can use);
// - among the results cuDNN timed successfully: deterministic ones only (the CPU twin promises
//   results that do not depend on scheduling, and a training run should repeat from its seed); if
//   no deterministic algorithm fits, the fastest nondeterministic one rather than a failure;
// - strict FP32 (ctx.tf32() false) prefers results cuDNN timed as CUDNN_FMA_MATH; if it labelled
//   none so, any algorithm cuDNN accepts under FMA. Either way it runs with the descriptor set to
//   CUDNN_FMA_MATH, so no tensor-core TF32 kernel can slip in; with TF32 on, the math type cuDNN
//   timed the algorithm with is used.
#include <cudnn.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/tensor.h"
#include "kernels/conv2d.h"

namespace tl {

class Context;

// 256 MiB: enough for the FFT / Winograd variants of ResNet18 and VGG16 layers at moderate batch
// sizes, small next to an H100's 80 GB, and never more than the shared workspace must hold at once.
constexpr size_t kConvWorkspaceCapBytes = size_t(256) << 20;

enum class ConvDirection { forward, backward_data, backward_filter };
const char* conv_direction_name(ConvDirection direction);

// The algorithm found for one direction of one plan.
struct ConvAlgorithm {
  int algo = 0;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t, by direction
  size_t workspace_bytes = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  float time_ms = 0;  // as cuDNN timed it during the search
  bool deterministic = true;
};

// Everything that decides the algorithm: x [N,C,H,W], w [O,C,KH,KW], stride, padding, TF32.
using ConvKey = std::array<int64_t, 12>;
ConvKey conv_key(const Tensor& x, const Tensor& w, const Conv2dParams& p, bool tf32);

// Descriptors for one key, made once. Owns them: destroyed with the plan.
struct ConvPlan {
  ConvPlan() = default;
  ~ConvPlan();
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;

  cudnnTensorDescriptor_t x = nullptr;     // [N,C,H,W]
  cudnnTensorDescriptor_t y = nullptr;     // [N,O,OH,OW]
  cudnnTensorDescriptor_t bias = nullptr;  // [1,O,1,1]
  cudnnFilterDescriptor_t w = nullptr;     // [O,C,KH,KW]
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnMathType_t requested_math = CUDNN_FMA_MATH;  // what the search may use (from the key's TF32 flag)
  std::optional<ConvAlgorithm> forward, backward_data, backward_filter;
};

struct CudnnAlgorithmCache {
  CudnnAlgorithmCache() = default;
  ~CudnnAlgorithmCache();
  CudnnAlgorithmCache(const CudnnAlgorithmCache&) = delete;
  CudnnAlgorithmCache& operator=(const CudnnAlgorithmCache&) = delete;

  // The plan for x (*) w with output y; made (descriptors only) on first sight of its key.
  ConvPlan& plan(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p, bool tf32);

  size_t size() const { return plans_.size(); }  // distinct keys seen
  int64_t searches() const { return searches_; }  // cudnnFind*AlgorithmEx calls made
  void count_search() { ++searches_; }
  // One line per plan and direction found: key, algorithm, math type, workspace, time. For tests
  // and benchmarks that want to say which kernels ran.
  std::string describe() const;

  // A device vector of at least n ones (float), for cuBLAS broadcasts and column sums (linear).
  // Grown on demand; valid until the next call that grows it.
  const float* ones(Context& ctx, int64_t n);

 private:
  std::map<ConvKey, std::unique_ptr<ConvPlan>> plans_;
  int64_t searches_ = 0;
  Tensor ones_;
};

// The Context's cache, created on first use.
CudnnAlgorithmCache& cudnn_algorithm_cache(Context& ctx);

// The algorithm for one direction of the plan, searched on first use with the given buffers (the
// search runs the convolution, so it writes y / dx; backward_filter searches into a scratch dw so
// that dw's accumulated contents survive). Leaves plan.conv set to the returned math type.
const ConvAlgorithm& conv_forward_algorithm(Context& ctx, ConvPlan& plan, const Tensor& x, const Tensor& w,
                                            Tensor& y);
const ConvAlgorithm& conv_backward_data_algorithm(Context& ctx, ConvPlan& plan, const Tensor& dy, const Tensor& w,
                                                  Tensor& dx);
const ConvAlgorithm& conv_backward_filter_algorithm(Context& ctx, ConvPlan& plan, const Tensor& x, const Tensor& dy,
                                                    const Tensor& dw);

// A dimension as the int cuDNN and cuBLAS take, or an error naming the op and the tensor.
int checked_int(int64_t value, const char* op, const Tensor& t);

}  // namespace tl
