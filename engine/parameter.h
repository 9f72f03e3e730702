#pragma once
// A learnable tensor and its gradient, and a buffer (state saved with the model but not learned,
// such as BatchNorm running statistics). Names here are local ("weight"); the Model forms the
// canonical dotted name ("layer4.1.conv2.weight").
#include <string>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace tl {

class Context;

class Parameter {
 public:
  Parameter(std::string local_name, Tensor value) : value(std::move(value)), local_name_(std::move(local_name)) {}

  const std::string& local_name() const { return local_name_; }
  bool trainable() const { return trainable_; }
  // Freezing frees the gradient: a frozen parameter holds no gradient memory.
  void set_trainable(bool trainable);
  // The gradient, allocated (zeroed) on first use; only trainable parameters may ask.
  // Always on the value's device: a gradient left elsewhere (the value was replaced by one on another device)
  // follows it.
  Tensor& grad(Context& ctx);
  bool has_grad() const { return grad_.defined(); }
  const Tensor& grad() const { return grad_; }
  void zero_grad(Context& ctx);
  // Moves value and gradient to a device (no-op for what is already there). Optimizer state lives in the
  // optimizer: Optimizer::to moves it (and Optimizer::step moves any it finds elsewhere).
  void to(Context& ctx, Device device);

  Tensor value;

 private:
  std::string local_name_;
  bool trainable_ = true;
  Tensor grad_;
};

// Fills a CPU parameter (F32 or F64) with U(-bound, bound): PyTorch's default initialisation of conv/linear.
void fill_uniform(Parameter& p, Rng& rng, double bound);

// CPU only; drops any gradient (it is re-made in the new dtype on next use).
void convert_parameter_dtype(Parameter& p, DType dtype);

struct Buffer {
  Buffer(std::string local_name, Tensor value, bool stays_on_host = false)
      : local_name(std::move(local_name)), value(std::move(value)), stays_on_host(stays_on_host) {}
  std::string local_name;
  Tensor value;
  // Bookkeeping only the host reads and writes (BatchNorm's num_batches_tracked): Model::to leaves it on the CPU,
  // so updating it never waits for the device. Saved and loaded like any other buffer.
  bool stays_on_host = false;
};

}  // namespace tl
