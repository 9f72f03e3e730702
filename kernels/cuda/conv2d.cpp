// CUDA convolution through cuDNN's legacy API: descriptors and algorithms come from the plan cache
// (kernels/cuda/conv2d_algorithms.h), the workspace from the Context's arena, and every call runs
// on the Context's stream (the handle is bound to it). Math: TF32 tensor cores when ctx.tf32()
// (PyTorch's default for convolutions), strict FP32 FMA otherwise.
#include "engine/context.h"
#include "engine/cuda_check.h"
#include "engine/cuda_state.h"
#include "kernels/conv2d.h"
#include "kernels/cuda/check_f32.h"
#include "kernels/cuda/conv2d_algorithms.h"

namespace tl::cuda {

namespace {

// cuDNN has no descriptor for a dimension of zero: such convolutions are handled before this.
void require_input_channels(const char* op, const Tensor& w) {
  TL_CHECK(w.size(1) > 0, op, ": weight ", shape_str(w.shape()), " has no input channels (not supported on CUDA)");
}

// A [N,C,H,W]-described tensor for the one call that has no plan (conv2d_backward_bias).
class TensorDescriptor {
 public:
  TensorDescriptor(const char* op, const Tensor& t, int64_t n, int64_t c, int64_t h, int64_t w) {
    TL_CUDA_CHECK(cudnnCreateTensorDescriptor(&desc_));
    try {
      TL_CUDA_CHECK(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, checked_int(n, op, t),
                                               checked_int(c, op, t), checked_int(h, op, t), checked_int(w, op, t)));
    } catch (...) {
      cudnnDestroyTensorDescriptor(desc_);
      throw;
    }
  }
  ~TensorDescriptor() { cudnnDestroyTensorDescriptor(desc_); }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

const float kOne = 1.0f, kZero = 0.0f;

}  // namespace

void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                    const Conv2dParams& p) {
  const char* op = "conv2d_forward";
  check_f32(op, x);
  check_f32(op, w);
  check_f32(op, y);
  if (bias) check_f32(op, *bias);
  if (y.numel() == 0) return;  // no images or no output channels: nothing to write
  require_input_channels(op, w);
  ConvPlan& plan = cudnn_algorithm_cache(ctx).plan(x, w, y, p, ctx.tf32());
  const ConvAlgorithm& algo = conv_forward_algorithm(ctx, plan, x, w, y);
  cudnnHandle_t handle = ctx.cuda().cudnn();
  void* workspace = ctx.cuda().workspace(algo.workspace_bytes);
  // beta = 0: y is not read (it may hold anything, NaN included).
  TL_CUDA_CHECK(cudnnConvolutionForward(handle, &kOne, plan.x, x.raw(), plan.w, w.raw(), plan.conv,
                                        static_cast<cudnnConvolutionFwdAlgo_t>(algo.algo), workspace,
                                        algo.workspace_bytes, &kZero, plan.y, y.raw()));
  // y += bias broadcast over N, OH, OW.
  if (bias) TL_CUDA_CHECK(cudnnAddTensor(handle, &kOne, plan.bias, bias->raw(), &kOne, plan.y, y.raw()));
}

void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) {
  const char* op = "conv2d_backward_data";
  check_f32(op, dy);
  check_f32(op, w);
  check_f32(op, dx);
  if (dx.numel() == 0) return;
  if (dy.numel() == 0) return dx.fill(ctx, 0.0);  // no output channels: the input had no influence
  ConvPlan& plan = cudnn_algorithm_cache(ctx).plan(dx, w, dy, p, ctx.tf32());
  const ConvAlgorithm& algo = conv_backward_data_algorithm(ctx, plan, dy, w, dx);
  void* workspace = ctx.cuda().workspace(algo.workspace_bytes);
  TL_CUDA_CHECK(cudnnConvolutionBackwardData(ctx.cuda().cudnn(), &kOne, plan.w, w.raw(), plan.y, dy.raw(), plan.conv,
                                             static_cast<cudnnConvolutionBwdDataAlgo_t>(algo.algo), workspace,
                                             algo.workspace_bytes, &kZero, plan.x, dx.raw()));
}

void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                            const Conv2dParams& p) {
  const char* op = "conv2d_backward_filter";
  check_f32(op, x);
  check_f32(op, dy);
  check_f32(op, dw);
  if (dbias) check_f32(op, *dbias);
  // No images, or no output channels: every gradient gets += 0.
  if (dy.numel() == 0) return;
  if (dw.numel() == 0) {  // no input channels: only the bias has a gradient
    if (dbias) cuda::conv2d_backward_bias(ctx, dy, *dbias);
    return;
  }
  ConvPlan& plan = cudnn_algorithm_cache(ctx).plan(x, dw, dy, p, ctx.tf32());
  const ConvAlgorithm& algo = conv_backward_filter_algorithm(ctx, plan, x, dy, dw);
  cudnnHandle_t handle = ctx.cuda().cudnn();
  void* workspace = ctx.cuda().workspace(algo.workspace_bytes);
  // beta = 1: dw += gradient (the contract accumulates).
  TL_CUDA_CHECK(cudnnConvolutionBackwardFilter(handle, &kOne, plan.x, x.raw(), plan.y, dy.raw(), plan.conv,
                                               static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo.algo), workspace,
                                               algo.workspace_bytes, &kOne, plan.w, dw.raw()));
  if (dbias) TL_CUDA_CHECK(cudnnConvolutionBackwardBias(handle, &kOne, plan.y, dy.raw(), &kOne, plan.bias, dbias->raw()));
}

void conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias) {
  const char* op = "conv2d_backward_bias";
  check_f32(op, dy);
  check_f32(op, dbias);
  if (dy.numel() == 0) return;  // += 0
  checked_int(dy.numel(), op, dy);
  TensorDescriptor dy_desc(op, dy, dy.size(0), dy.size(1), dy.size(2), dy.size(3));
  TensorDescriptor db_desc(op, dbias, 1, dbias.size(0), 1, 1);
  // beta = 1: dbias += sum of dy over N, OH, OW.
  TL_CUDA_CHECK(cudnnConvolutionBackwardBias(ctx.cuda().cudnn(), &kOne, dy_desc.get(), dy.raw(), &kOne, db_desc.get(),
                                             dbias.raw()));
}

}  // namespace tl::cuda
