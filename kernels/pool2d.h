#pragma once
// 2-d pooling over NCHW tensors: max, average (count_include_pad, PyTorch's default) and adaptive
// average. Output sizes follow PyTorch with ceil_mode=False (floor). Entry points dispatch on the
// tensor's device to the cpu:: or cuda:: twin; the CUDA twin (F32) is deterministic and matches the CPU
// twin bit for bit, except global average pooling (output 1x1), which sums in another order (within an ulp).
#include <cstdint>

#include "engine/tensor.h"

namespace tl {
class Context;

struct Pool2dParams {
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h = 0, pad_w = 0;
};

// floor((input + 2*pad - kernel) / stride) + 1. Throws when it is <= 0, when kernel or stride is not
// positive, or when pad is negative or more than half the kernel (PyTorch's rule: otherwise a window
// could lie entirely in the padding).
int64_t pool2d_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t pad);

// Square pooling as the layers take it (stride -1 = kernel, as PyTorch's stride=None); throws naming
// `who` when kernel or stride is not positive or padding is not in [0, kernel/2].
Pool2dParams square_pool_params(const char* who, int64_t kernel, int64_t stride, int64_t padding);

// x [N,C,H,W], y [N,C,OH,OW] (overwritten). indices: I64, shaped like y (overwritten), the flat h*W+w
// position of each maximum inside its input plane; padding counts as -inf, so it never wins. Ties
// keep the first position in row-major window order; NaN propagates, as in PyTorch.
void maxpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& indices, const Pool2dParams& params);
// dx [N,C,H,W] is overwritten: zero except dy summed into each window's argmax, in increasing output
// order. Indices outside the plane throw on the CPU and are ignored on CUDA (no error path on the device).
void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx);
// The same result, given the forward's geometry (dy must be dx's pooled shape under params): on CUDA each
// dx element then gathers from the few windows that contain it, the fast path. Indices must come from
// maxpool2d_forward with these params (an index outside its window is ignored on CUDA).
void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx, const Pool2dParams& params);

// Mean over each window with padded zeros counted (count_include_pad = true); with floor output sizes
// every window lies inside the padded input, so the divisor is always kernel_h * kernel_w.
void avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, const Pool2dParams& params);
void avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dParams& params);  // dx overwritten

// PyTorch's adaptive bins: output row i averages input rows [floor(i*H/OH), ceil((i+1)*H/OH)), likewise
// for columns. y's shape [N,C,OH,OW] chooses the output size.
void adaptive_avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y);
void adaptive_avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx);  // dx overwritten

// Bin [start, end) of output i when `in` positions are split into `out` adaptive bins.
inline int64_t adaptive_bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t adaptive_bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

namespace cpu {
void maxpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& indices, const Pool2dParams& params);
void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx);
void avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, const Pool2dParams& params);
void avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dParams& params);
void adaptive_avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y);
void adaptive_avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx);
}  // namespace cpu
namespace cuda {
void maxpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& indices, const Pool2dParams& params);
void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx);
void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx, const Pool2dParams& params);
void avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, const Pool2dParams& params);
void avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dParams& params);
void adaptive_avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y);
void adaptive_avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx);
}  // namespace cuda
}  // namespace tl
