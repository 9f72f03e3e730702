#include "kernels/pool2d.h"

namespace tl {

int64_t pool2d_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t pad) {
  TL_CHECK(kernel > 0 && stride > 0, "pool2d: kernel ", kernel, " and stride ", stride, " must be positive");
  TL_CHECK(pad >= 0 && 2 * pad <= kernel, "pool2d: padding ", pad, " must be in [0, kernel/2] for kernel ", kernel);
  int64_t span = input + 2 * pad - kernel;  // checked before dividing: C++ division truncates towards zero
  TL_CHECK(span >= 0, "pool2d: input size ", input, " with padding ", pad, " is smaller than kernel ", kernel);
  return span / stride + 1;
}

Pool2dParams square_pool_params(const char* who, int64_t kernel, int64_t stride, int64_t padding) {
  if (stride == -1) stride = kernel;
  TL_CHECK(kernel > 0 && stride > 0, who, ": kernel_size ", kernel, " and stride ", stride, " must be positive");
  TL_CHECK(padding >= 0 && 2 * padding <= kernel, who, ": padding ", padding,
           " must be in [0, kernel_size/2] for kernel_size ", kernel);
  return {kernel, kernel, stride, stride, padding, padding};
}

namespace {

void check_4d(const char* op, const char* name, const Tensor& t) {
  TL_CHECK(t.dim() == 4, op, ": ", name, " must be 4-d [N,C,H,W], got ", t.describe());
}

// y (and indices) must be [N, C, OH, OW] for input x under params.
Shape pooled_shape(const char* op, const Tensor& x, const Pool2dParams& p) {
  check_4d(op, "x", x);
  try {
    return {x.size(0), x.size(1), pool2d_output_size(x.size(2), p.kernel_h, p.stride_h, p.pad_h),
            pool2d_output_size(x.size(3), p.kernel_w, p.stride_w, p.pad_w)};
  } catch (const Error& e) {
    throw Error(str(op, ": input ", shape_str(x.shape()), ": ", e.what()));
  }
}

void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected) {
  TL_CHECK(t.shape() == expected, op, ": ", name, " has shape ", shape_str(t.shape()), ", expected ",
           shape_str(expected));
}

void check_indices(const char* op, const Tensor& indices, const Tensor& like) {
  TL_CHECK(indices.dtype() == DType::I64 && indices.device() == like.device(), op, ": indices must be I64 on ",
           device_name(like.device()), ", got ", indices.describe());
  check_shape(op, "indices", indices, like.shape());
}

// A pooled tensor [N,C,OH,OW] paired with a full-size one [N,C,H,W]: batch and channels must agree.
void check_planes(const char* op, const char* pooled_name, const Tensor& pooled, const char* full_name,
                  const Tensor& full) {
  check_4d(op, pooled_name, pooled);
  check_4d(op, full_name, full);
  TL_CHECK(pooled.size(0) == full.size(0) && pooled.size(1) == full.size(1), op, ": ", pooled_name, " ",
           shape_str(pooled.shape()), " and ", full_name, " ", shape_str(full.shape()),
           " differ in batch or channels");
}

}  // namespace

void maxpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, Tensor& indices, const Pool2dParams& params) {
  const char* op = "maxpool2d_forward";
  check_shape(op, "y", y, pooled_shape(op, x, params));
  check_same_device_dtype(op, x, y);
  check_indices(op, indices, y);
  if (x.is_cuda()) return cuda::maxpool2d_forward(ctx, x, y, indices, params);
  cpu::maxpool2d_forward(ctx, x, y, indices, params);
}

void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx) {
  const char* op = "maxpool2d_backward";
  check_planes(op, "dy", dy, "dx", dx);
  check_same_device_dtype(op, dy, dx);
  check_indices(op, indices, dy);
  if (dy.is_cuda()) return cuda::maxpool2d_backward(ctx, dy, indices, dx);
  cpu::maxpool2d_backward(ctx, dy, indices, dx);
}

void maxpool2d_backward(Context& ctx, const Tensor& dy, const Tensor& indices, Tensor& dx, const Pool2dParams& params) {
  const char* op = "maxpool2d_backward";
  check_shape(op, "dy", dy, pooled_shape(op, dx, params));
  check_same_device_dtype(op, dy, dx);
  check_indices(op, indices, dy);
  if (dy.is_cuda()) return cuda::maxpool2d_backward(ctx, dy, indices, dx, params);
  cpu::maxpool2d_backward(ctx, dy, indices, dx);  // the CPU scatter needs no geometry
}

void avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y, const Pool2dParams& params) {
  const char* op = "avgpool2d_forward";
  check_shape(op, "y", y, pooled_shape(op, x, params));
  check_same_device_dtype(op, x, y);
  if (x.is_cuda()) return cuda::avgpool2d_forward(ctx, x, y, params);
  cpu::avgpool2d_forward(ctx, x, y, params);
}

void avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx, const Pool2dParams& params) {
  const char* op = "avgpool2d_backward";
  check_shape(op, "dy", dy, pooled_shape(op, dx, params));
  check_same_device_dtype(op, dy, dx);
  if (dy.is_cuda()) return cuda::avgpool2d_backward(ctx, dy, dx, params);
  cpu::avgpool2d_backward(ctx, dy, dx, params);
}

void adaptive_avgpool2d_forward(Context& ctx, const Tensor& x, Tensor& y) {
  const char* op = "adaptive_avgpool2d_forward";
  check_planes(op, "y", y, "x", x);
  TL_CHECK(y.size(2) > 0 && y.size(3) > 0 && x.size(2) > 0 && x.size(3) > 0, op, ": empty planes in x ",
           shape_str(x.shape()), " or y ", shape_str(y.shape()));
  check_same_device_dtype(op, x, y);
  if (x.is_cuda()) return cuda::adaptive_avgpool2d_forward(ctx, x, y);
  cpu::adaptive_avgpool2d_forward(ctx, x, y);
}

void adaptive_avgpool2d_backward(Context& ctx, const Tensor& dy, Tensor& dx) {
  const char* op = "adaptive_avgpool2d_backward";
  check_planes(op, "dy", dy, "dx", dx);
  TL_CHECK(dy.size(2) > 0 && dy.size(3) > 0 && dx.size(2) > 0 && dx.size(3) > 0, op, ": empty planes in dy ",
           shape_str(dy.shape()), " or dx ", shape_str(dx.shape()));
  check_same_device_dtype(op, dy, dx);
  if (dy.is_cuda()) return cuda::adaptive_avgpool2d_backward(ctx, dy, dx);
  cpu::adaptive_avgpool2d_backward(ctx, dy, dx);
}

}  // namespace tl
