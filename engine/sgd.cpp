// torch.optim.SGD (momentum, dampening, Nesterov, L2 weight decay) plus Keras' time decay of the lr.
#include "engine/context.h"
#include "engine/optimizer.h"
#include "kernels/optimizer_update.h"

namespace tl {

namespace {

class Sgd final : public Optimizer {
 public:
  explicit Sgd(const SgdOptions& options) : Optimizer("sgd", options.decay), options_(options) {}

 protected:
  void init_state(Context& ctx, const Parameter& parameter, OptimizerState& state) override {
    if (options_.momentum != 0) state.tensors["momentum_buffer"] = Tensor::zeros_like(ctx, parameter.value);
  }

  void update(Context& ctx, Parameter& parameter, double lr, OptimizerState& state) override {
    Tensor* buffer = options_.momentum != 0 ? &state.tensors.at("momentum_buffer") : nullptr;
    sgd_update(ctx, parameter.value, parameter.grad(), buffer, lr, options_.momentum, options_.dampening,
               options_.nesterov, options_.weight_decay, state.step == 1);
  }

 private:
  SgdOptions options_;
};

}  // namespace

std::unique_ptr<Optimizer> make_sgd(const SgdOptions& o) {
  TL_CHECK(o.momentum >= 0, "sgd: momentum must be >= 0, got ", o.momentum);
  TL_CHECK(o.weight_decay >= 0, "sgd: weight_decay must be >= 0, got ", o.weight_decay);
  TL_CHECK(o.decay >= 0, "sgd: decay must be >= 0, got ", o.decay);
  TL_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
           "sgd: Nesterov momentum requires momentum > 0 and zero dampening, got momentum ", o.momentum,
           ", dampening ", o.dampening);
  return std::make_unique<Sgd>(o);
}

}  // namespace tl
