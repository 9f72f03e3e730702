#include "kernels/linear.h"

namespace tl {

namespace {

void check_2d(const char* op, const char* what, const Tensor& t) {
  TL_CHECK(t.dim() == 2, op, ": ", what, " must be 2-d, got ", t.describe());
}

void check_features(const char* op, const Tensor& x, const Tensor& w) {
  check_2d(op, "input [N,in]", x);
  check_2d(op, "weight [out,in]", w);
  TL_CHECK(x.size(1) == w.size(1), op, ": input ", shape_str(x.shape()), " has ", x.size(1),
           " features but weight ", shape_str(w.shape()), " expects ", w.size(1));
}

void check_output(const char* op, const char* what, const Tensor& t, const Tensor& x, const Tensor& w) {
  Shape expected{x.size(0), w.size(0)};
  TL_CHECK(t.shape() == expected, op, ": ", what, " has shape ", shape_str(t.shape()), ", expected ",
           shape_str(expected), " for input ", shape_str(x.shape()), " and weight ", shape_str(w.shape()));
}

void check_bias(const char* op, const Tensor& bias, const Tensor& w) {
  TL_CHECK(bias.dim() == 1 && bias.size(0) == w.size(0), op, ": bias ", shape_str(bias.shape()),
           " does not match weight ", shape_str(w.shape()), " (expected [", w.size(0), "])");
  check_same_device_dtype(op, w, bias);
}

}  // namespace

void linear_forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const char* op = "linear_forward";
  check_features(op, x, w);
  check_output(op, "output", y, x, w);
  check_same_device_dtype(op, x, w);
  check_same_device_dtype(op, x, y);
  if (bias) check_bias(op, *bias, w);
  if (x.is_cuda()) return cuda::linear_forward(ctx, x, w, bias, y);
  cpu::linear_forward(ctx, x, w, bias, y);
}

void linear_backward_data(Context& ctx, const Tensor& dy, const Tensor& w, Tensor& dx) {
  const char* op = "linear_backward_data";
  check_features(op, dx, w);
  check_output(op, "output gradient", dy, dx, w);
  check_same_device_dtype(op, dy, w);
  check_same_device_dtype(op, dy, dx);
  if (dy.is_cuda()) return cuda::linear_backward_data(ctx, dy, w, dx);
  cpu::linear_backward_data(ctx, dy, w, dx);
}

void linear_backward_weight(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* dbias) {
  const char* op = "linear_backward_weight";
  check_features(op, x, dw);
  check_output(op, "output gradient", dy, x, dw);
  check_same_device_dtype(op, x, dy);
  check_same_device_dtype(op, x, dw);
  if (dbias) check_bias(op, *dbias, dw);
  if (x.is_cuda()) return cuda::linear_backward_weight(ctx, x, dy, dw, dbias);
  cpu::linear_backward_weight(ctx, x, dy, dw, dbias);
}

void linear_backward_bias(Context& ctx, const Tensor& dy, Tensor& dbias) {
  const char* op = "linear_backward_bias";
  check_2d(op, "output gradient [N,out]", dy);
  TL_CHECK(dbias.dim() == 1 && dbias.size(0) == dy.size(1), op, ": bias gradient ", shape_str(dbias.shape()),
           " does not match output gradient ", shape_str(dy.shape()));
  check_same_device_dtype(op, dy, dbias);
  if (dy.is_cuda()) return cuda::linear_backward_bias(ctx, dy, dbias);
  cpu::linear_backward_bias(ctx, dy, dbias);
}

}  // namespace tl
