#include "kernels/cuda/conv2d_algorithms.h"

#include <algorithm>
#include <climits>
#include <sstream>
#include <vector>

#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "engine/error.h"

namespace tl {

const char* conv_direction_name(ConvDirection direction) {
  switch (direction) {
    case ConvDirection::forward: return "forward";
    case ConvDirection::backward_data: return "backward_data";
    case ConvDirection::backward_filter: return "backward_filter";
  }
  return "?";
}

int checked_int(int64_t value, const char* op, const Tensor& t) {
  TL_CHECK(value >= 0 && value <= INT_MAX, op, ": ", t.describe(), " needs ", value,
           " in an int (cuDNN and cuBLAS index with int; split the batch)");
  return static_cast<int>(value);
}

ConvKey conv_key(const Tensor& x, const Tensor& w, const Conv2dParams& p, bool tf32) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3),
          p.stride_h, p.stride_w, p.pad_h, p.pad_w, tf32 ? 1 : 0};
}

ConvPlan::~ConvPlan() {
  // Destructors must not throw: release quietly. Descriptors are host objects, independent of
  // the cuDNN handle, so the order against CudaState's handle teardown does not matter.
  if (conv) cudnnDestroyConvolutionDescriptor(conv);
  if (w) cudnnDestroyFilterDescriptor(w);
  if (bias) cudnnDestroyTensorDescriptor(bias);
  if (y) cudnnDestroyTensorDescriptor(y);
  if (x) cudnnDestroyTensorDescriptor(x);
}

CudnnAlgorithmCache::~CudnnAlgorithmCache() = default;  // plans release their descriptors, ones_ its storage

ConvPlan& CudnnAlgorithmCache::plan(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p,
                                    bool tf32) {
  const ConvKey key = conv_key(x, w, p, tf32);
  auto found = plans_.find(key);
  if (found != plans_.end()) return *found->second;

  const char* op = "conv2d (cuDNN plan)";
  // Legacy cuDNN descriptors hold packed int strides: every tensor must have < 2^31 elements.
  checked_int(x.numel(), op, x);
  checked_int(w.numel(), op, w);
  checked_int(y.numel(), op, y);
  auto made = std::make_unique<ConvPlan>();  // owns each descriptor as soon as it exists
  ConvPlan& plan = *made;
  plan.requested_math = tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
  TL_CUDA_CHECK(cudnnCreateTensorDescriptor(&plan.x));
  TL_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, checked_int(x.size(0), op, x),
                                           checked_int(x.size(1), op, x), checked_int(x.size(2), op, x),
                                           checked_int(x.size(3), op, x)));
  TL_CUDA_CHECK(cudnnCreateTensorDescriptor(&plan.y));
  TL_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, checked_int(y.size(0), op, y),
                                           checked_int(y.size(1), op, y), checked_int(y.size(2), op, y),
                                           checked_int(y.size(3), op, y)));
  TL_CUDA_CHECK(cudnnCreateTensorDescriptor(&plan.bias));
  TL_CUDA_CHECK(cudnnSetTensor4dDescriptor(plan.bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                           checked_int(w.size(0), op, w), 1, 1));
  TL_CUDA_CHECK(cudnnCreateFilterDescriptor(&plan.w));
  TL_CUDA_CHECK(cudnnSetFilter4dDescriptor(plan.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, checked_int(w.size(0), op, w),
                                           checked_int(w.size(1), op, w), checked_int(w.size(2), op, w),
                                           checked_int(w.size(3), op, w)));
  TL_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&plan.conv));
  TL_CUDA_CHECK(cudnnSetConvolution2dDescriptor(plan.conv, checked_int(p.pad_h, op, x), checked_int(p.pad_w, op, x),
                                                checked_int(p.stride_h, op, x), checked_int(p.stride_w, op, x), 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  TL_CUDA_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.requested_math));
  // cuDNN's idea of the output must be ours (conv2d_output_size), or every call would be wrong.
  int n = 0, c = 0, h = 0, wd = 0;
  TL_CUDA_CHECK(cudnnGetConvolution2dForwardOutputDim(plan.conv, plan.x, plan.w, &n, &c, &h, &wd));
  TL_CHECK(Shape({n, c, h, wd}) == y.shape(), op, ": cuDNN computes output [", n, ",", c, ",", h, ",", wd,
           "] for input ", shape_str(x.shape()), " and weight ", shape_str(w.shape()), ", tl expects ",
           shape_str(y.shape()));
  return *plans_.emplace(key, std::move(made)).first->second;
}

std::string CudnnAlgorithmCache::describe() const {
  std::ostringstream out;
  for (const auto& [key, plan] : plans_) {
    auto line = [&](const char* direction, const std::optional<ConvAlgorithm>& a) {
      if (!a) return;
      out << "x[" << key[0] << "," << key[1] << "," << key[2] << "," << key[3] << "] w[" << key[4] << "," << key[1]
          << "," << key[5] << "," << key[6] << "] stride " << key[7] << "x" << key[8] << " pad " << key[9] << "x"
          << key[10] << (key[11] ? " tf32" : " fp32") << " " << direction << ": algo " << a->algo << " math "
          << static_cast<int>(a->math) << " workspace " << a->workspace_bytes << " B " << a->time_ms << " ms"
          << (a->deterministic ? "" : " NONDETERMINISTIC") << "\n";
    };
    line("forward", plan->forward);
    line("backward_data", plan->backward_data);
    line("backward_filter", plan->backward_filter);
  }
  return out.str();
}

const float* CudnnAlgorithmCache::ones(Context& ctx, int64_t n) {
  if (!ones_.defined() || ones_.numel() < n) {
    // Round up so that a growing batch size does not refill for every new size.
    int64_t size = std::max<int64_t>(n, 1024);
    ones_ = Tensor::empty(ctx, {size}, DType::F32, Device::CUDA);
    ones_.fill(ctx, 1.0);  // on the stream, so every later use is ordered after it
  }
  return ones_.data<float>();
}

CudnnAlgorithmCache& cudnn_algorithm_cache(Context& ctx) {
  CudaState& cuda = ctx.cuda();
  if (!cuda.conv_algorithms) cuda.conv_algorithms = std::make_shared<CudnnAlgorithmCache>();
  return *cuda.conv_algorithms;
}

namespace {

// The fastest result that ran within the offered workspace and that `accept` takes; nullptr if none.
template <class Perf, class Accept>
const Perf* fastest(const Perf* results, int count, size_t offered, Accept accept) {
  const Perf* best = nullptr;
  for (int i = 0; i < count; ++i) {
    const Perf& r = results[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > offered || r.time < 0 || !accept(r)) continue;
    if (!best || r.time < best->time) best = &r;
  }
  return best;
}

// The fastest eligible result (see the header for the rules), or an error listing what cuDNN said.
// `need` asks cuDNN for one algorithm's workspace under the descriptor's math type (the requested one
// while searching).
template <class Perf, class Need>
ConvAlgorithm pick(const Perf* results, int count, size_t offered, const ConvPlan& plan, ConvDirection direction,
                   Need need) {
  const bool strict_fp32 = plan.requested_math == CUDNN_FMA_MATH;
  auto any = [](const Perf&) { return true; };
  auto deterministic = [](const Perf& r) { return r.determinism == CUDNN_DETERMINISTIC; };
  auto fma = [](const Perf& r) { return r.mathType == CUDNN_FMA_MATH; };
  // Find also times CUDNN_DEFAULT_MATH besides the descriptor's type and may label an algorithm that
  // has no tensor-core kernel DEFAULT. If strict FP32 finds no FMA-labelled result, it takes any
  // result whose algorithm cuDNN accepts under FMA: it runs with the descriptor set to FMA below, so
  // no TF32 kernel can run either way.
  auto runs_as_fma = [&](const Perf& r) {
    size_t bytes = 0;
    return need(static_cast<int>(r.algo), &bytes) == CUDNN_STATUS_SUCCESS;
  };
  const Perf* best = nullptr;
  if (strict_fp32) {
    best = fastest(results, count, offered, [&](const Perf& r) { return fma(r) && deterministic(r); });
    if (!best) best = fastest(results, count, offered, fma);
    if (!best)
      best = fastest(results, count, offered, [&](const Perf& r) { return runs_as_fma(r) && deterministic(r); });
    if (!best) best = fastest(results, count, offered, runs_as_fma);
  } else {
    best = fastest(results, count, offered, deterministic);
    if (!best) best = fastest(results, count, offered, any);
  }
  if (!best) {
    std::ostringstream seen;
    for (int i = 0; i < count; ++i)
      seen << " [algo " << static_cast<int>(results[i].algo) << ": " << cudnnGetErrorString(results[i].status)
           << ", math " << static_cast<int>(results[i].mathType) << ", workspace " << results[i].memory << "]";
    throw Error(str("conv2d ", conv_direction_name(direction), ": no cuDNN algorithm ran within ", offered,
                    " bytes of workspace", strict_fp32 ? " in strict FP32 (FMA) math" : "", "; cuDNN reported",
                    seen.str()));
  }
  ConvAlgorithm chosen;
  chosen.algo = static_cast<int>(best->algo);
  chosen.workspace_bytes = best->memory;
  // Strict FP32 stays FMA whatever the record says; TF32 runs with the math type that was timed.
  chosen.math = strict_fp32 ? CUDNN_FMA_MATH : best->mathType;
  if (strict_fp32 && best->mathType != CUDNN_FMA_MATH) {
    // Timed under another math type: the FMA variant's workspace is what the run needs.
    size_t bytes = 0;
    if (need(chosen.algo, &bytes) == CUDNN_STATUS_SUCCESS)
      chosen.workspace_bytes = std::max(chosen.workspace_bytes, bytes);
  }
  chosen.time_ms = best->time;
  chosen.deterministic = best->determinism == CUDNN_DETERMINISTIC;
  return chosen;
}

// The workspace to offer the search: the largest need of any algorithm within the cap. `need`
// asks cuDNN for one algorithm's size; algorithms that do not support the geometry answer with an
// error status and are skipped.
template <class Need>
size_t workspace_to_offer(int algorithm_count, Need need) {
  size_t offered = 0;
  for (int a = 0; a < algorithm_count; ++a) {
    size_t bytes = 0;
    if (need(a, &bytes) == CUDNN_STATUS_SUCCESS && bytes <= kConvWorkspaceCapBytes) offered = std::max(offered, bytes);
  }
  return offered;
}

// Room for every result Find may return: cuDNN's own maximum, and never fewer than two per algorithm
// (it may time an algorithm under the descriptor's math type and again under CUDNN_DEFAULT_MATH), so
// that the cut at requestedAlgoCount cannot drop the FMA results strict FP32 needs.
size_t result_slots(int max_count, int algorithm_count) {
  return static_cast<size_t>(std::max(max_count, 2 * algorithm_count));
}

}  // namespace

const ConvAlgorithm& conv_forward_algorithm(Context& ctx, ConvPlan& plan, const Tensor& x, const Tensor& w,
                                            Tensor& y) {
  if (!plan.forward) {
    CudaState& cuda = ctx.cuda();
    cudnnHandle_t handle = cuda.cudnn();
    TL_CUDA_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.requested_math));
    auto need = [&](int a, size_t* bytes) {
      return cudnnGetConvolutionForwardWorkspaceSize(handle, plan.x, plan.w, plan.conv, plan.y,
                                                     static_cast<cudnnConvolutionFwdAlgo_t>(a), bytes);
    };
    size_t offered = workspace_to_offer(CUDNN_CONVOLUTION_FWD_ALGO_COUNT, need);
    void* workspace = cuda.workspace(offered);
    int max_count = 0;
    TL_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> results(
        result_slots(max_count, CUDNN_CONVOLUTION_FWD_ALGO_COUNT));
    int count = 0;
    TL_CUDA_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle, plan.x, x.raw(), plan.w, w.raw(), plan.conv, plan.y,
                                                         y.raw(), static_cast<int>(results.size()), &count,
                                                         results.data(), workspace, offered));
    cudnn_algorithm_cache(ctx).count_search();
    plan.forward = pick(results.data(), count, offered, plan, ConvDirection::forward, need);
  }
  TL_CUDA_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.forward->math));
  return *plan.forward;
}

const ConvAlgorithm& conv_backward_data_algorithm(Context& ctx, ConvPlan& plan, const Tensor& dy, const Tensor& w,
                                                  Tensor& dx) {
  if (!plan.backward_data) {
    CudaState& cuda = ctx.cuda();
    cudnnHandle_t handle = cuda.cudnn();
    TL_CUDA_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.requested_math));
    auto need = [&](int a, size_t* bytes) {
      return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, plan.w, plan.y, plan.conv, plan.x,
                                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(a), bytes);
    };
    size_t offered = workspace_to_offer(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, need);
    void* workspace = cuda.workspace(offered);
    int max_count = 0;
    TL_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> results(
        result_slots(max_count, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT));
    int count = 0;
    TL_CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(handle, plan.w, w.raw(), plan.y, dy.raw(), plan.conv,
                                                              plan.x, dx.raw(), static_cast<int>(results.size()),
                                                              &count, results.data(), workspace, offered));
    cudnn_algorithm_cache(ctx).count_search();
    plan.backward_data = pick(results.data(), count, offered, plan, ConvDirection::backward_data, need);
  }
  TL_CUDA_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.backward_data->math));
  return *plan.backward_data;
}

const ConvAlgorithm& conv_backward_filter_algorithm(Context& ctx, ConvPlan& plan, const Tensor& x, const Tensor& dy,
                                                    const Tensor& dw) {
  if (!plan.backward_filter) {
    CudaState& cuda = ctx.cuda();
    cudnnHandle_t handle = cuda.cudnn();
    TL_CUDA_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.requested_math));
    auto need = [&](int a, size_t* bytes) {
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, plan.x, plan.y, plan.conv, plan.w,
                                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(a), bytes);
    };
    size_t offered = workspace_to_offer(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, need);
    void* workspace = cuda.workspace(offered);
    // The search overwrites its output: dw holds an accumulated gradient, so search into scratch.
    Tensor scratch = Tensor::empty(ctx, dw.shape(), DType::F32, Device::CUDA);
    int max_count = 0;
    TL_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> results(
        result_slots(max_count, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT));
    int count = 0;
    TL_CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, plan.x, x.raw(), plan.y, dy.raw(), plan.conv,
                                                                plan.w, scratch.raw(), static_cast<int>(results.size()),
                                                                &count, results.data(), workspace, offered));
    cudnn_algorithm_cache(ctx).count_search();
    plan.backward_filter = pick(results.data(), count, offered, plan, ConvDirection::backward_filter, need);
  }
  TL_CUDA_CHECK(cudnnSetConvolutionMathType(plan.conv, plan.backward_filter->math));
  return *plan.backward_filter;
}

}  // namespace tl
