#include "engine/sequential.h"

#include "engine/error.h"

namespace tl {

Layer& Sequential::add(std::string name, std::unique_ptr<Layer> layer) {
  TL_CHECK(find(name) == nullptr, "Sequential: duplicate layer name '", name, "'");
  layers_.emplace_back(std::move(name), std::move(layer));
  return *layers_.back().second;
}

void Sequential::replace(const std::string& name, std::unique_ptr<Layer> layer) {
  for (auto& [n, l] : layers_)
    if (n == name) {
      l = std::move(layer);
      return;
    }
  throw Error(str("Sequential: no layer named '", name, "' to replace"));
}

Layer* Sequential::find(const std::string& name) {
  for (auto& [n, l] : layers_)
    if (n == name) return l.get();
  return nullptr;
}

std::vector<std::pair<std::string, Layer*>> Sequential::children() {
  std::vector<std::pair<std::string, Layer*>> out;
  for (auto& [n, l] : layers_) out.emplace_back(n, l.get());
  return out;
}

bool Sequential::plan_backward(bool input_requires_grad) {
  bool flowing = input_requires_grad;
  for (auto& [n, l] : layers_) flowing = l->plan_backward(flowing);
  set_plan(input_requires_grad, flowing);
  return flowing;
}

Tensor Sequential::forward_impl(Context& ctx, const Tensor& x, Mode mode) {
  Tensor h = x;
  for (auto& [n, l] : layers_) h = l->forward(ctx, h, mode);
  return h;
}

Tensor Sequential::backward_impl(Context& ctx, const Tensor& dy, bool need_dx) {
  // Walk down while gradients still flow; below the lowest trainable layer nothing is called.
  Tensor g = dy;
  for (size_t i = layers_.size(); i-- > 0;) {
    Layer& layer = *layers_[i].second;
    if (!layer.output_requires_grad()) return Tensor();
    bool child_needs_dx = layer.input_requires_grad() && (i > 0 || need_dx);
    g = layer.backward(ctx, g, child_needs_dx);
    if (!child_needs_dx) return Tensor();
  }
  return g;
}

}  // namespace tl
