#pragma once
// BatchNorm2d as torchvision has it: learnable per-channel scale and shift ("weight", "bias") and
// running statistics kept as buffers ("running_mean", "running_var", "num_batches_tracked").
//
// The frozen-BN rule of transfer learning: when neither weight nor bias is trainable, a Train-mode
// forward behaves exactly like Eval (running statistics, which it does not update, nor
// num_batches_tracked) and backward propagates dx through the eval formula. Otherwise Train mode
// normalises with the batch statistics and updates the running ones; Eval always uses the running
// statistics.
#include <cstdint>

#include "engine/layer.h"

namespace tl {

class BatchNorm2d : public Layer {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);

  std::vector<Parameter*> local_parameters() override { return {&weight, &bias}; }
  std::vector<Buffer*> local_buffers() override { return {&running_mean, &running_var, &num_batches_tracked}; }
  // PyTorch's reset: weight ones, bias zeros, running statistics back to (0, 1), counter 0.
  void reset_parameters(Rng& rng) override;

  // True when neither weight nor bias is trainable: Train mode then behaves as Eval.
  bool frozen() const { return !weight.trainable() && !bias.trainable(); }
  int64_t channels() const { return channels_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }

  Parameter weight;  // [C], ones
  Parameter bias;  // [C], zeros
  Buffer running_mean;  // [C], zeros
  Buffer running_var;  // [C], ones
  Buffer num_batches_tracked;  // I64 scalar (shape {}), training forwards with batch statistics; stays on the host

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  void count_batch(Context& ctx);

  int64_t channels_;
  double eps_;
  double momentum_;
  // Kept by a forward that backward will follow: x only with batch statistics (frozen backward needs no input).
  bool saved_ = false;
  Tensor x_;
  Tensor save_mean_, save_invstd_;  // batch statistics; undefined when the forward used running ones
};

}  // namespace tl
