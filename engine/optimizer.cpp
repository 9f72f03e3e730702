#include "engine/optimizer.h"

#include <unordered_set>

#include "engine/context.h"

namespace tl {

Optimizer::Optimizer(std::string name, double decay) : name_(std::move(name)), decay_(decay) {}

Optimizer::~Optimizer() = default;

void Optimizer::add_group(std::vector<NamedParameter> params, double lr) {
  TL_CHECK(lr >= 0, name_, ": learning rate must be >= 0, got ", lr);
  std::unordered_set<const Parameter*> seen;
  for (const ParamGroup& g : groups_)
    for (const NamedParameter& np : g.params) seen.insert(np.parameter);
  for (const NamedParameter& np : params) {
    TL_CHECK(np.parameter != nullptr, name_, ": parameter '", np.name, "' is null");
    TL_CHECK(seen.insert(np.parameter).second, name_, ": parameter '", np.name,
             "' appears in more than one parameter group");
  }
  groups_.push_back({std::move(params), lr});
}

void Optimizer::step(Context& ctx) {
  for (size_t g = 0; g < groups_.size(); ++g) {
    double group_lr = lr(g);
    for (NamedParameter& np : groups_[g].params) {
      Parameter& p = *np.parameter;
      if (!p.trainable() || !p.has_grad()) continue;
      try {
        auto it = state_.find(&p);
        if (it == state_.end()) {
          OptimizerState fresh;  // inserted only once allocated, so a failure leaves no empty state
          init_state(ctx, p, fresh);
          it = state_.emplace(&p, std::move(fresh)).first;
        }
        for (auto& [state_name, t] : it->second.tensors)
          if (t.device() != p.value.device()) t = t.to(ctx, p.value.device());  // the model moved since
        ++it->second.step;
        try {
          update(ctx, p, group_lr, it->second);
        } catch (...) {
          --it->second.step;  // a failed update is not a step: bias correction must not drift
          throw;
        }
      } catch (const Error& e) {
        throw Error(str(name_, ": parameter '", np.name, "': ", e.what()));
      }
    }
  }
  ++iterations_;
}

void Optimizer::to(Context& ctx, Device device) {
  for (auto& [parameter, state] : state_)
    for (auto& [name, t] : state.tensors) t = t.to(ctx, device);
}

void Optimizer::zero_grad(Context& ctx) {
  for (ParamGroup& g : groups_)
    for (NamedParameter& np : g.params) np.parameter->zero_grad(ctx);
}

void Optimizer::set_lr(double lr) {
  TL_CHECK(lr >= 0, name_, ": learning rate must be >= 0, got ", lr);
  for (ParamGroup& g : groups_) g.lr = lr;
}

void Optimizer::set_group_lr(size_t index, double lr) {
  TL_CHECK(lr >= 0, name_, ": learning rate must be >= 0, got ", lr);
  group(index);  // range check
  groups_[index].lr = lr;
}

void Optimizer::set_lr_factor(double factor) {
  TL_CHECK(factor >= 0, name_, ": learning-rate factor must be >= 0, got ", factor);
  lr_factor_ = factor;
}

double Optimizer::base_lr(size_t index) const { return group(index).lr; }

double Optimizer::lr(size_t index) const {
  return group(index).lr * lr_factor_ / (1.0 + decay_ * double(iterations_));
}

const OptimizerState* Optimizer::state(const Parameter& parameter) const {
  auto it = state_.find(&parameter);
  return it == state_.end() ? nullptr : &it->second;
}

const ParamGroup& Optimizer::group(size_t index) const {
  TL_CHECK(index < groups_.size(), name_, ": parameter group ", index, " does not exist (", groups_.size(),
           " groups)");
  return groups_[index];
}

}  // namespace tl
