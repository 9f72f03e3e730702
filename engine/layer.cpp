#include "engine/layer.h"

#include "engine/error.h"

namespace tl {

namespace {
// Leaf errors get the layer's name once; containers let their children's messages through.
Error named_error(Layer& layer, const std::exception& e) {
  if (!layer.children().empty()) return Error(e.what());
  std::string name = layer.path().empty() ? "<unnamed>" : layer.path();
  return Error(str("layer ", name, " (", layer.kind(), "): ", e.what()));
}
}  // namespace

Tensor Layer::forward(Context& ctx, const Tensor& x, Mode mode) {
  ++forward_calls_;
  TL_CHECK(x.defined(), "layer ", path_, " (", kind_, "): forward of an undefined tensor");
  try {
    return forward_impl(ctx, x, mode);
  } catch (const Error& e) {
    throw named_error(*this, e);
  }
}

Tensor Layer::backward(Context& ctx, const Tensor& dy, bool need_dx) {
  ++backward_calls_;
  TL_CHECK(dy.defined(), "layer ", path_, " (", kind_, "): backward of an undefined gradient");
  try {
    return backward_impl(ctx, dy, need_dx);
  } catch (const Error& e) {
    throw named_error(*this, e);
  }
}

bool Layer::plan_backward(bool input_requires_grad) {
  bool trains = false;
  for (Parameter* p : local_parameters()) trains = trains || p->trainable();
  set_plan(input_requires_grad, input_requires_grad || trains);
  return output_requires_grad_;
}

bool Layer::has_trainable_parameters() {
  for (Parameter* p : local_parameters())
    if (p->trainable()) return true;
  for (auto& [name, child] : children())
    if (child->has_trainable_parameters()) return true;
  return false;
}

void check_input(const Layer& layer, const Tensor& x, int64_t dims, const char* what) {
  TL_CHECK(x.dim() == dims, "expected a ", dims, "-d input (", what, "), got ", x.describe());
}

}  // namespace tl
