#include "engine/model.h"

#include <fnmatch.h>

#include "engine/context.h"
#include "engine/error.h"

namespace tl {

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void visit(Layer& layer, const std::string& path, const std::function<void(const std::string&, Layer&)>& fn) {
  fn(path, layer);
  for (auto& [name, child] : layer.children()) visit(*child, join(path, name), fn);
}

// A batch left on the host while the model lives on the GPU (or the reverse) would otherwise fail deep inside the
// first kernel with a message about two tensors; say what to do instead.
void check_input_device(Model& model, const Tensor& x) {
  for (auto& np : model.named_parameters()) {
    const Tensor& w = np.parameter->value;
    TL_CHECK(w.device() == x.device(), "model input ", x.describe(), " is not on the model's device (", np.name, " is ",
             w.describe(), "): move the batch there first (or the model, with Model::to)");
    return;  // the first parameter stands for all: Model::to moves them together
  }
}
}  // namespace

Model::Model() : root_(std::make_unique<Sequential>()) {}

Tensor Model::forward(Context& ctx, const Tensor& x, Mode mode) {
  assign_paths();
  check_input_device(*this, x);
  if (mode == Mode::Train) root_->plan_backward(false);
  return root_->forward(ctx, x, mode);
}

void Model::backward(Context& ctx, const Tensor& dlogits) { root_->backward(ctx, dlogits, false); }

void Model::visit_layers(const std::function<void(const std::string&, Layer&)>& fn) { visit(*root_, "", fn); }

void Model::assign_paths() {
  visit_layers([](const std::string& path, Layer& layer) { layer.set_path(path); });
}

std::vector<NamedParameter> Model::named_parameters() {
  std::vector<NamedParameter> out;
  visit_layers([&](const std::string& path, Layer& layer) {
    for (Parameter* p : layer.local_parameters()) out.push_back({join(path, p->local_name()), p});
  });
  return out;
}

std::vector<NamedBuffer> Model::named_buffers() {
  std::vector<NamedBuffer> out;
  visit_layers([&](const std::string& path, Layer& layer) {
    for (Buffer* b : layer.local_buffers()) out.push_back({join(path, b->local_name), b});
  });
  return out;
}

Parameter& Model::parameter(const std::string& name) {
  for (auto& np : named_parameters())
    if (np.name == name) return *np.parameter;
  throw Error(str("model has no parameter named '", name, "'"));
}

Layer* Model::find_layer(const std::string& dotted_path) {
  Layer* found = nullptr;
  visit_layers([&](const std::string& path, Layer& layer) {
    if (path == dotted_path) found = &layer;
  });
  return found;
}

int Model::set_trainable(const std::string& glob, bool trainable) {
  int matched = 0;
  for (auto& np : named_parameters()) {
    if (fnmatch(glob.c_str(), np.name.c_str(), 0) == 0) {
      np.parameter->set_trainable(trainable);
      ++matched;
    }
  }
  TL_CHECK(matched > 0, "set_trainable: pattern '", glob, "' matches no parameter");
  return matched;
}

void Model::freeze_until(const std::string& layer_name) {
  auto params = named_parameters();
  size_t first = params.size();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& n = params[i].name;
    if (n.compare(0, layer_name.size() + 1, layer_name + ".") == 0) {
      first = i;
      break;
    }
  }
  TL_CHECK(first < params.size(), "freeze_until: no parameter under layer '", layer_name, "'");
  for (size_t i = 0; i < params.size(); ++i) params[i].parameter->set_trainable(i >= first);
}

int64_t Model::count_parameters(bool trainable_only) {
  int64_t n = 0;
  for (auto& np : named_parameters())
    if (!trainable_only || np.parameter->trainable()) n += np.parameter->value.numel();
  return n;
}

void Model::zero_grad(Context& ctx) {
  for (auto& np : named_parameters()) np.parameter->zero_grad(ctx);
}

void Model::reset_parameters(Rng& rng) {
  visit_layers([&](const std::string&, Layer& layer) { layer.reset_parameters(rng); });
}

void Model::to_dtype(DType dtype) {
  for (auto& np : named_parameters()) convert_parameter_dtype(*np.parameter, dtype);
  for (auto& nb : named_buffers())
    if (nb.buffer->value.dtype() != DType::I64) nb.buffer->value = nb.buffer->value.to_dtype(dtype);
}

void Model::to(Context& ctx, Device device) {
  for (auto& np : named_parameters()) np.parameter->to(ctx, device);
  for (auto& nb : named_buffers())
    if (!nb.buffer->stays_on_host) nb.buffer->value = nb.buffer->value.to(ctx, device);
}

}  // namespace tl
