#include "engine/parameter.h"

#include "engine/context.h"

namespace tl {

void Parameter::set_trainable(bool trainable) {
  trainable_ = trainable;
  if (!trainable) grad_ = Tensor();
}

Tensor& Parameter::grad(Context& ctx) {
  TL_CHECK(trainable_, "gradient requested for frozen parameter '", local_name_, "'");
  if (!grad_.defined()) grad_ = Tensor::zeros(ctx, value.shape(), value.dtype(), value.device());
  else if (grad_.device() != value.device()) grad_ = grad_.to(ctx, value.device());
  return grad_;
}

void Parameter::zero_grad(Context& ctx) {
  if (grad_.defined()) grad_.fill(ctx, 0.0);
}

void Parameter::to(Context& ctx, Device device) {
  value = value.to(ctx, device);
  if (grad_.defined()) grad_ = grad_.to(ctx, device);
}

void fill_uniform(Parameter& p, Rng& rng, double bound) {
  Tensor& t = p.value;
  TL_CHECK(t.device() == Device::CPU, "reset_parameters: '", p.local_name(), "' must be on the CPU, got ",
           t.describe());
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = (2 * rng.uniform() - 1) * bound;
    if (t.dtype() == DType::F64)
      t.data<double>()[i] = v;
    else
      t.data<float>()[i] = static_cast<float>(v);
  }
}

void convert_parameter_dtype(Parameter& p, DType dtype) {
  p.value = p.value.to_dtype(dtype);
  bool trainable = p.trainable();
  p.set_trainable(false);  // frees the old-dtype gradient
  p.set_trainable(trainable);
}

}  // namespace tl
