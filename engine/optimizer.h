#pragma once
// Optimizers: parameter groups with their own learning rates, per-parameter state created lazily
// (only for trainable parameters that have a gradient, on the parameter's device and dtype, following the
// parameter when it moves), and the update itself done by one fused kernel per tensor (kernels/optimizer_update.h).
//
// The learning rate used at a step is  base_lr(group) * lr_factor() / (1 + decay * iterations()),
// where lr_factor() is set from a schedule (engine/schedule.h) and decay is Keras' time decay
// (SGD only; 0 elsewhere). Frozen parameters are skipped entirely: never read, never written, no state.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/model.h"

namespace tl {

class Context;

struct ParamGroup {
  std::vector<NamedParameter> params;
  double lr;  // base learning rate
};

// One parameter's optimizer state. Tensors carry PyTorch's state_dict names ("momentum_buffer",
// "exp_avg", "exp_avg_sq", "square_avg") so a checkpoint of them reads the same in both.
struct OptimizerState {
  int64_t step = 0;  // updates applied to this parameter, counting the one in progress (from 1)
  std::map<std::string, Tensor> tensors;
};

class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Throws when a parameter is null or already belongs to a group, or lr < 0.
  void add_group(std::vector<NamedParameter> params, double lr);
  // Updates every trainable parameter that has a gradient, then counts one iteration.
  void step(Context& ctx);
  void zero_grad(Context& ctx);
  // Moves every state tensor to a device, with its parameter (Model::to). step() also moves any state tensor it
  // finds away from its parameter's device, so moving the model alone is enough; this saves the first step the copy.
  void to(Context& ctx, Device device);

  void set_lr(double lr);  // every group's base lr
  void set_group_lr(size_t group, double lr);
  void set_lr_factor(double factor);  // schedule multiplier on every group's base lr (1 initially)
  double base_lr(size_t group = 0) const;
  double lr_factor() const { return lr_factor_; }
  double lr(size_t group = 0) const;  // effective: base * factor, with Keras decay
  int64_t iterations() const { return iterations_; }  // completed step() calls

  size_t state_count() const { return state_.size(); }
  const OptimizerState* state(const Parameter& parameter) const;  // null when it has none
  std::vector<ParamGroup>& groups() { return groups_; }
  const std::string& name() const { return name_; }

 protected:
  Optimizer(std::string name, double decay);
  // Allocates the state tensors of a parameter on its first update.
  virtual void init_state(Context& ctx, const Parameter& parameter, OptimizerState& state) = 0;
  // Applies one update with the effective lr; state.step has already been incremented.
  virtual void update(Context& ctx, Parameter& parameter, double lr, OptimizerState& state) = 0;

 private:
  const ParamGroup& group(size_t index) const;

  std::string name_;
  double decay_;
  double lr_factor_ = 1;
  int64_t iterations_ = 0;
  std::vector<ParamGroup> groups_;
  std::unordered_map<const Parameter*, OptimizerState> state_;
};

struct SgdOptions {
  double momentum = 0, dampening = 0, weight_decay = 0;
  double decay = 0;  // Keras: lr / (1 + decay * iterations)
  bool nesterov = false;
};
struct AdamOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;  // AdamW
};
struct RmspropOptions {
  double alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
};

// Each validates its options as PyTorch does and throws naming the bad one.
std::unique_ptr<Optimizer> make_sgd(const SgdOptions& options);
std::unique_ptr<Optimizer> make_adam(const AdamOptions& options);
std::unique_ptr<Optimizer> make_rmsprop(const RmspropOptions& options);

}  // namespace tl
