#include "layers/batchnorm2d.h"

#include "engine/context.h"
#include "kernels/batchnorm.h"

namespace tl {

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum)
    : Layer("BatchNorm2d"),
      weight("weight", Tensor::full({channels}, 1.0)),
      bias("bias", Tensor::zeros({channels})),
      running_mean("running_mean", Tensor::zeros({channels})),
      running_var("running_var", Tensor::full({channels}, 1.0)),
      num_batches_tracked("num_batches_tracked", Tensor::zeros({}, DType::I64), /*stays_on_host=*/true),
      channels_(channels),
      eps_(eps),
      momentum_(momentum) {
  TL_CHECK(channels > 0, "BatchNorm2d: channels must be positive, got ", channels);
}

void BatchNorm2d::reset_parameters(Rng&) {
  for (const Tensor* t : {&weight.value, &bias.value, &running_mean.value, &running_var.value})
    TL_CHECK(!t->is_cuda(), "reset_parameters: BatchNorm2d tensors must be on the CPU (reset before Model::to), got ",
             t->describe());
  weight.value.fill(1.0);
  bias.value.fill(0.0);
  running_mean.value.fill(0.0);
  running_var.value.fill(1.0);
  num_batches_tracked.value.fill(0.0);
}

Tensor BatchNorm2d::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  check_input(*this, x, 4, "[N,C,H,W]");
  TL_CHECK(x.size(1) == channels_, "expected [N,", channels_, ",H,W], got ", x.describe());
  Tensor y = Tensor::empty_like(ctx, x);
  saved_ = false;
  x_ = Tensor();
  save_mean_ = Tensor();
  save_invstd_ = Tensor();
  bool batch_statistics = mode == Mode::Train && !frozen();
  if (batch_statistics) {
    // Double, whatever x is: backward recomputes x - mean, exact only with the exact mean.
    Tensor save_mean = Tensor::empty(ctx, {channels_}, DType::F64, x.device());
    Tensor save_invstd = Tensor::empty(ctx, {channels_}, DType::F64, x.device());
    batchnorm_forward_train(ctx, x, weight.value, bias.value, running_mean.value, running_var.value, momentum_, eps_,
                            y, save_mean, save_invstd);
    count_batch(ctx);
    if (saves_for_backward(mode)) {
      save_mean_ = save_mean;
      save_invstd_ = save_invstd;
    }
  } else {
    batchnorm_forward_eval(ctx, x, weight.value, bias.value, running_mean.value, running_var.value, eps_, y);
  }
  if (saves_for_backward(mode)) {
    saved_ = true;
    // Frozen: backward is dx = dy * gamma / sqrt(running_var + eps), which needs no input; x is kept only for the
    // batch statistics' backward.
    if (batch_statistics) x_ = x;
  }
  return y;
}

Tensor BatchNorm2d::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  TL_CHECK(saved_, kNoSavedActivations);
  Tensor dx;
  if (need_dx) dx = Tensor::empty_like(ctx, dy);
  // Frozen parameters ask for nothing, so no gradient memory is allocated for them.
  Tensor* dgamma = weight.trainable() ? &weight.grad(ctx) : nullptr;
  Tensor* dbeta = bias.trainable() ? &bias.grad(ctx) : nullptr;
  Tensor* dx_out = need_dx ? &dx : nullptr;
  if (save_mean_.defined()) {
    batchnorm_backward_train(ctx, x_, dy, weight.value, save_mean_, save_invstd_, dx_out, dgamma, dbeta);
  } else {
    // The forward ran frozen (running statistics), so no parameter trained then; one made trainable since would
    // need the input, which was not kept.
    TL_CHECK(!dgamma && !dbeta, "weight or bias made trainable between forward and backward: its input was not kept");
    // dx needs no input: dy stands in for x, whose shape it has and whose values are read only for dgamma/dbeta.
    batchnorm_backward_eval(ctx, dy, dy, weight.value, running_mean.value, running_var.value, eps_, dx_out, nullptr,
                            nullptr);
  }
  saved_ = false;
  x_ = Tensor();
  save_mean_ = Tensor();
  save_invstd_ = Tensor();
  return dx;
}

// num_batches_tracked stays on the host (Buffer::stays_on_host), so counting never waits for the device; one moved
// there explicitly takes a round trip through the host.
void BatchNorm2d::count_batch(Context& ctx) {
  Tensor& counter = num_batches_tracked.value;
  TL_CHECK(counter.dtype() == DType::I64 && counter.numel() == 1, "num_batches_tracked must be an I64 scalar, got ",
           counter.describe());
  if (!counter.is_cuda()) {
    ++counter.data<int64_t>()[0];
    return;
  }
  Tensor host = counter.to(ctx, Device::CPU);
  ++host.data<int64_t>()[0];
  counter.copy_from(ctx, host);
}

}  // namespace tl
