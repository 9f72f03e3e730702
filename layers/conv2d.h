#pragma once
// Conv2d with PyTorch's parameters and defaults: square kernel, same stride and padding on both
// axes, dilation 1, groups 1. Parameters "weight" [O,C,K,K] and optional "bias" [O].
#include <cstdint>
#include <optional>

#include "engine/layer.h"
#include "kernels/conv2d.h"

namespace tl {

class Conv2d : public Layer {
 public:
  // Parameters are created F32 on the CPU, initialised as reset_parameters would with a fixed seed,
  // so a fresh layer is usable; Model::reset_parameters re-draws them from the caller's generator.
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1, int64_t padding = 0,
         bool bias = true);

  std::vector<Parameter*> local_parameters() override;
  // PyTorch's default: kaiming_uniform(a=sqrt(5)) for the weight, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
  // and the same bound for the bias; fan_in = C*K*K.
  void reset_parameters(Rng& rng) override;
  const Conv2dParams& params() const { return params_; }

  Parameter weight;
  std::optional<Parameter> bias;

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  Conv2dParams params_;
  bool saved_ = false;  // a training forward happened and backward has not run yet
  Shape x_shape_;       // dx's shape (the output size alone does not determine it when stride > 1)
  Tensor x_;            // kept only when the weight trains: the filter gradient is all that needs it
};

}  // namespace tl
