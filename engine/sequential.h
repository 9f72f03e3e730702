#pragma once
// A container of named layers run in order (torchvision's nn.Sequential, and the root of a Model).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/layer.h"

namespace tl {

class Sequential : public Layer {
 public:
  Sequential() : Layer("Sequential") {}

  // Appends a layer under a name ("conv1", "0"); returns it for further setup.
  Layer& add(std::string name, std::unique_ptr<Layer> layer);
  template <class L, class... Args>
  L& emplace(std::string name, Args&&... args) {
    auto layer = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *layer;
    add(std::move(name), std::move(layer));
    return ref;
  }
  // Swaps the layer of that name for another (a new head); throws if the name is absent.
  void replace(const std::string& name, std::unique_ptr<Layer> layer);
  Layer* find(const std::string& name);
  size_t size() const { return layers_.size(); }
  Layer& at(size_t i) { return *layers_.at(i).second; }
  const std::string& name_at(size_t i) const { return layers_.at(i).first; }

  std::vector<std::pair<std::string, Layer*>> children() override;
  bool plan_backward(bool input_requires_grad) override;

 protected:
  Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) override;
  Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) override;

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Layer>>> layers_;
};

}  // namespace tl
