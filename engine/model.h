#pragma once
// A Model: a root Sequential of named layers (with nested containers and residual blocks), the
// canonical torchvision-style names of its parameters and buffers, and freezing by name.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/sequential.h"

namespace tl {

struct NamedParameter {
  std::string name;
  Parameter* parameter;
};
struct NamedBuffer {
  std::string name;
  Buffer* buffer;
};

class Model {
 public:
  Model();
  Sequential& root() { return *root_; }

  // Train mode plans backward first (see layer.h), so frozen parts keep no activations.
  Tensor forward(Context& ctx, const Tensor& x, Mode mode);
  // Backpropagates the loss gradient; never computes a gradient for the model's input.
  void backward(Context& ctx, const Tensor& dlogits);

  std::vector<NamedParameter> named_parameters();
  std::vector<NamedBuffer> named_buffers();
  Parameter& parameter(const std::string& name);  // throws naming the missing parameter
  Layer* find_layer(const std::string& dotted_path);
  // Every layer with its dotted path, parents before children.
  void visit_layers(const std::function<void(const std::string&, Layer&)>& visit);
  // Call after changing the structure: gives every layer its dotted path for error messages.
  void assign_paths();

  // Glob over parameter names (fnmatch: '*', '?', '[4-9]'); returns how many matched and throws
  // when none did, so a typo never silently trains or freezes nothing.
  int set_trainable(const std::string& glob, bool trainable);
  // Freezes every parameter before the first one under `layer_name` (a layer path such as
  // "layer4" or "features.24") and makes it and everything after it trainable.
  void freeze_until(const std::string& layer_name);
  int64_t count_parameters(bool trainable_only = false);
  void zero_grad(Context& ctx);
  void reset_parameters(Rng& rng);
  // Converts every parameter and buffer of floating type (gradient checks run models in F64).
  void to_dtype(DType dtype);
  void to(Context& ctx, Device device);

  std::string architecture;
  std::vector<std::string> class_names;
  std::map<std::string, std::string> metadata;  // preprocessing and provenance, saved with weights

 private:
  std::unique_ptr<Sequential> root_;
};

}  // namespace tl
