// torch.optim.RMSprop (not centered), with optional momentum and L2 weight decay.
#include "engine/context.h"
#include "engine/optimizer.h"
#include "kernels/optimizer_update.h"

namespace tl {

namespace {

class Rmsprop final : public Optimizer {
 public:
  explicit Rmsprop(const RmspropOptions& options) : Optimizer("rmsprop", 0), options_(options) {}

 protected:
  void init_state(Context& ctx, const Parameter& parameter, OptimizerState& state) override {
    state.tensors["square_avg"] = Tensor::zeros_like(ctx, parameter.value);
    // Zero-initialised: unlike SGD's, RMSprop's buffer is blended in from the first step.
    if (options_.momentum > 0) state.tensors["momentum_buffer"] = Tensor::zeros_like(ctx, parameter.value);
  }

  void update(Context& ctx, Parameter& parameter, double lr, OptimizerState& state) override {
    Tensor* buffer = options_.momentum > 0 ? &state.tensors.at("momentum_buffer") : nullptr;
    rmsprop_update(ctx, parameter.value, parameter.grad(), state.tensors.at("square_avg"), buffer, lr,
                   options_.alpha, options_.eps, options_.weight_decay, options_.momentum);
  }

 private:
  RmspropOptions options_;
};

}  // namespace

std::unique_ptr<Optimizer> make_rmsprop(const RmspropOptions& o) {
  TL_CHECK(o.alpha >= 0, "rmsprop: alpha must be >= 0, got ", o.alpha);
  TL_CHECK(o.eps >= 0, "rmsprop: eps must be >= 0, got ", o.eps);
  TL_CHECK(o.momentum >= 0, "rmsprop: momentum must be >= 0, got ", o.momentum);
  TL_CHECK(o.weight_decay >= 0, "rmsprop: weight_decay must be >= 0, got ", o.weight_decay);
  return std::make_unique<Rmsprop>(o);
}

}  // namespace tl
