#pragma once
// One memory-bound kernel of tl bench --kernels: how to make one set of its tensors, how to call ours and the
// reference on a set, and the bytes each must move at least (every input read once, every output written once).
// The runner (bench_kernels.cpp) makes enough sets that together they exceed the L2 cache several times over and
// rotates through them, so no call finds its data in L2 left there by the previous one.
#include <functional>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/tensor.h"

namespace tl::app::bench {

using TensorSet = std::vector<Tensor>;
using SetCall = std::function<void(Context&, TensorSet&)>;

struct KernelCase {
  std::string name;    // our entry point, e.g. "batchnorm_forward_train"
  std::string shape;   // what it runs on, e.g. "x [128,64,56,56]"
  int64_t bytes = 0;   // the least our op must move
  std::function<TensorSet(Context&)> make;  // one set: inputs filled with random values, outputs allocated
  SetCall prepare;     // optional: once per set before ours is timed (a forward that backward needs)
  SetCall ours;
  std::string reference;     // "" when there is no equivalent library call
  int64_t reference_bytes = 0;
  SetCall prepare_reference;  // optional, as prepare
  SetCall reference_call;
};

// The cases on ResNet18-sized tensors at this batch (the layer1 activation [batch,64,56,56] for elementwise ops,
// BatchNorm and dropout; conv1's output for the max pool; layer4's output for the global average pool; [batch,1000]
// logits; ResNet18's 11.7M parameters for the optimizer updates; [batch,224,224,3] pixels for image normalisation).
std::vector<KernelCase> kernel_cases(int64_t batch);

}  // namespace tl::app::bench
