#pragma once
// Linear (fully connected) with PyTorch's parameters: "weight" [out,in] and optional "bias" [out].
// Takes [N,in] only: flatten image features first (a 4-d input is an error, not a silent reshape).
#include <cstdint>
#include <optional>

#include "engine/layer.h"

namespace tl {

class Linear : public Layer {
 public:
  // Parameters are created F32 on the CPU, initialised as reset_parameters would with a fixed seed,
  // so a fresh layer is usable; Model::reset_parameters re-draws them from the caller's generator.
  Linear(int64_t in_features, int64_t out_features, bool bias = true);

  std::vector<Parameter*> local_parameters() override;
  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  void reset_parameters(Rng& rng) override;

  Parameter weight;
  std::optional<Parameter> bias;

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  bool saved_ = false;  // a training forward happened and backward has not run yet
  Shape x_shape_;
  Tensor x_;  // kept only when the weight trains: the weight gradient is all that needs it
};

}  // namespace tl
