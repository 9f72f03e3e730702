#pragma once
// The Layer interface. Explicit layer-wise backward (as in Caffe and llm.c), no autograd tape.
//
// Backward pruning is decided statically before a training forward: plan_backward() propagates
// "requires grad" from the input upwards exactly as autograd would. A layer whose output needs no
// gradient saves nothing in forward and is never called in backward; a layer whose input needs no
// gradient is asked for no dx. Standalone layers (never planned) save everything and give dx.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/parameter.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace tl {

class Context;

// What a layer's backward says when its forward kept nothing for it.
inline constexpr const char* kNoSavedActivations =
    "no saved activations: backward needs a training forward that keeps them (the last forward was an Eval "
    "forward, or backward already ran)";

enum class Mode { Eval, Train };

class Layer {
 public:
  explicit Layer(std::string kind) : kind_(std::move(kind)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  // Non-virtual wrappers: count calls and name the layer in any error raised below them.
  Tensor forward(Context& ctx, const Tensor& x, Mode mode);
  // Returns dx when need_dx, else an undefined tensor. Parameter gradients accumulate (+=);
  // dx is overwritten. Activations saved by forward are released.
  Tensor backward(Context& ctx, const Tensor& dy, bool need_dx);

  virtual std::vector<Parameter*> local_parameters() { return {}; }
  virtual std::vector<Buffer*> local_buffers() { return {}; }
  virtual std::vector<std::pair<std::string, Layer*>> children() { return {}; }
  // Fresh initial values for this layer's own parameters (PyTorch's defaults); containers do
  // nothing here: Model::reset_parameters visits every layer.
  virtual void reset_parameters(Rng& rng) {}

  // Given whether the input carries a gradient, records what backward needs and returns whether
  // the output carries one. Containers override it to walk their children.
  virtual bool plan_backward(bool input_requires_grad);
  bool input_requires_grad() const { return input_requires_grad_; }
  bool output_requires_grad() const { return output_requires_grad_; }
  bool has_trainable_parameters();  // this layer or any descendant

  const std::string& kind() const { return kind_; }
  const std::string& path() const { return path_; }
  void set_path(std::string path) { path_ = std::move(path); }
  int64_t forward_calls() const { return forward_calls_; }
  int64_t backward_calls() const { return backward_calls_; }

 protected:
  virtual Tensor forward_impl(Context& ctx, const Tensor& x, Mode mode) = 0;
  virtual Tensor backward_impl(Context& ctx, const Tensor& dy, bool need_dx) = 0;
  // Whether a forward in this mode must keep what backward will need.
  bool saves_for_backward(Mode mode) const { return mode == Mode::Train && output_requires_grad_; }
  void set_plan(bool input_requires_grad, bool output_requires_grad) {
    input_requires_grad_ = input_requires_grad;
    output_requires_grad_ = output_requires_grad;
  }

 private:
  std::string kind_;
  std::string path_;
  bool input_requires_grad_ = true;
  bool output_requires_grad_ = true;
  int64_t forward_calls_ = 0;
  int64_t backward_calls_ = 0;
};

// Throws naming the layer and both shapes: "layer fc (Linear): input ... expected ...".
void check_input(const Layer& layer, const Tensor& x, int64_t dims, const char* what);

}  // namespace tl
