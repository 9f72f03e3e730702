#include "layers/flatten.h"

namespace tl {

namespace {
// [N, d1, d2, ...] -> [N, d1*d2*...]; a product rather than -1, so a zero-sized batch still flattens.
Shape flattened(const Shape& shape) {
  int64_t rest = 1;
  for (size_t d = 1; d < shape.size(); ++d) rest *= shape[d];
  return {shape[0], rest};
}
}  // namespace

Tensor Flatten::forward_impl(Context&, const Tensor& x, Mode mode) {
  TL_CHECK(x.dim() >= 2, "expected an input of at least 2 dims [N, ...], got ", x.describe());
  input_shape_ = saves_for_backward(mode) ? x.shape() : Shape();
  return x.reshape(flattened(x.shape()));
}

Tensor Flatten::backward_impl(Context&, const Tensor& dy, bool need_dx) {
  TL_CHECK(!input_shape_.empty(), kNoSavedActivations);
  Shape expected = flattened(input_shape_);
  TL_CHECK(dy.shape() == expected, "gradient ", shape_str(dy.shape()), " expected ", shape_str(expected));
  Tensor dx;
  if (need_dx) dx = dy.reshape(input_shape_);
  input_shape_.clear();
  return dx;
}

}  // namespace tl
