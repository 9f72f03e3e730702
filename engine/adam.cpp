// torch.optim.Adam and AdamW (decoupled weight decay), bias-corrected, per-parameter step counts.
#include "engine/context.h"
#include "engine/optimizer.h"
#include "kernels/optimizer_update.h"

namespace tl {

namespace {

class Adam final : public Optimizer {
 public:
  explicit Adam(const AdamOptions& options) : Optimizer(options.decoupled ? "adamw" : "adam", 0), options_(options) {}

 protected:
  void init_state(Context& ctx, const Parameter& parameter, OptimizerState& state) override {
    state.tensors["exp_avg"] = Tensor::zeros_like(ctx, parameter.value);
    state.tensors["exp_avg_sq"] = Tensor::zeros_like(ctx, parameter.value);
  }

  void update(Context& ctx, Parameter& parameter, double lr, OptimizerState& state) override {
    adam_update(ctx, parameter.value, parameter.grad(), state.tensors.at("exp_avg"), state.tensors.at("exp_avg_sq"),
                lr, options_.beta1, options_.beta2, options_.eps, options_.weight_decay, options_.decoupled,
                state.step);
  }

 private:
  AdamOptions options_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adam(const AdamOptions& o) {
  const char* name = o.decoupled ? "adamw" : "adam";
  TL_CHECK(o.beta1 >= 0 && o.beta1 < 1, name, ": beta1 must be in [0,1), got ", o.beta1);
  TL_CHECK(o.beta2 >= 0 && o.beta2 < 1, name, ": beta2 must be in [0,1), got ", o.beta2);
  TL_CHECK(o.eps >= 0, name, ": eps must be >= 0, got ", o.eps);
  TL_CHECK(o.weight_decay >= 0, name, ": weight_decay must be >= 0, got ", o.weight_decay);
  return std::make_unique<Adam>(o);
}

}  // namespace tl
