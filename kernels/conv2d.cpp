#include "kernels/conv2d.h"

namespace tl {

int64_t conv2d_output_size(int64_t input, int64_t kernel, int64_t stride, int64_t pad) {
  TL_CHECK(stride >= 1 && pad >= 0 && kernel >= 1, "conv2d: invalid geometry (input ", input, ", kernel ", kernel,
           ", stride ", stride, ", padding ", pad, ")");
  int64_t span = input + 2 * pad - kernel;
  // Checked before dividing: C++ division truncates towards zero, so -1 / 2 would pass as 0.
  TL_CHECK(span >= 0, "conv2d: kernel ", kernel, " larger than input ", input, " with padding ", pad,
           " (output size would be <= 0)");
  return span / stride + 1;
}

namespace {

void check_4d(const char* op, const char* what, const Tensor& t) {
  TL_CHECK(t.dim() == 4, op, ": ", what, " must be 4-d, got ", t.describe());
}

// The output shape x and w imply, after checking that their channels agree.
Shape expected_output_shape(const char* op, const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  check_4d(op, "input [N,C,H,W]", x);
  check_4d(op, "weight [O,C,KH,KW]", w);
  TL_CHECK(x.size(1) == w.size(1), op, ": input ", shape_str(x.shape()), " has ", x.size(1),
           " channels but weight ", shape_str(w.shape()), " expects ", w.size(1));
  return {x.size(0), w.size(0), conv2d_output_size(x.size(2), w.size(2), p.stride_h, p.pad_h),
          conv2d_output_size(x.size(3), w.size(3), p.stride_w, p.pad_w)};
}

void check_shape(const char* op, const char* what, const Tensor& t, const Shape& expected) {
  TL_CHECK(t.shape() == expected, op, ": ", what, " has shape ", shape_str(t.shape()), ", expected ",
           shape_str(expected));
}

void check_bias(const char* op, const Tensor& bias, const Tensor& w) {
  TL_CHECK(bias.dim() == 1 && bias.size(0) == w.size(0), op, ": bias ", shape_str(bias.shape()),
           " does not match weight ", shape_str(w.shape()), " (expected [", w.size(0), "])");
  check_same_device_dtype(op, w, bias);
}

}  // namespace

void conv2d_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y,
                    const Conv2dParams& p) {
  const char* op = "conv2d_forward";
  check_shape(op, "output", y, expected_output_shape(op, x, w, p));
  check_same_device_dtype(op, x, w);
  check_same_device_dtype(op, x, y);
  if (bias) check_bias(op, *bias, w);
  if (x.is_cuda()) return cuda::conv2d_forward(ctx, x, w, bias, y, p);
  cpu::conv2d_forward(ctx, x, w, bias, y, p);
}

void conv2d_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx, const Conv2dParams& p) {
  const char* op = "conv2d_backward_data";
  check_shape(op, "output gradient", dy, expected_output_shape(op, dx, w, p));
  check_same_device_dtype(op, dy, w);
  check_same_device_dtype(op, dy, dx);
  if (dy.is_cuda()) return cuda::conv2d_backward_data(ctx, dy, w, dx, p);
  cpu::conv2d_backward_data(ctx, dy, w, dx, p);
}

void conv2d_backward_filter(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias,
                            const Conv2dParams& p) {
  const char* op = "conv2d_backward_filter";
  check_shape(op, "output gradient", dy, expected_output_shape(op, x, dw, p));
  check_same_device_dtype(op, x, dy);
  check_same_device_dtype(op, x, dw);
  if (dbias) check_bias(op, *dbias, dw);
  if (x.is_cuda()) return cuda::conv2d_backward_filter(ctx, x, dy, dw, dbias, p);
  cpu::conv2d_backward_filter(ctx, x, dy, dw, dbias, p);
}

void conv2d_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias) {
  const char* op = "conv2d_backward_bias";
  check_4d(op, "output gradient [N,O,OH,OW]", dy);
  TL_CHECK(dbias.dim() == 1 && dbias.size(0) == dy.size(1), op, ": bias gradient ", shape_str(dbias.shape()),
           " does not match output gradient ", shape_str(dy.shape()));
  check_same_device_dtype(op, dy, dbias);
  if (dy.is_cuda()) return cuda::conv2d_backward_bias(ctx, dy, dbias);
  cpu::conv2d_backward_bias(ctx, dy, dbias);
}

}  // namespace tl
