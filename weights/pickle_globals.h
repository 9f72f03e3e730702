#pragma once
// Internal to the unpickler (weights/pickle.h): the globals a checkpoint may name, and what REDUCE, NEWOBJ and
// BUILD mean for them. Nothing is ever called: each allowed global has its fixed meaning here.
#include <string_view>

#include "weights/pickle_builder.h"

namespace tl::pickle::detail {

// GLOBAL, STACK_GLOBAL (and INST, to name a rejected class): the global as a value; a global off the allow-list
// throws "<context>: pickle global '<module>.<name>' is not allowed in a checkpoint".
NodePtr make_global(Builder& values, std::string_view module, std::string_view name);

// REDUCE: collections.OrderedDict(), torch._utils._rebuild_tensor_v2 / _rebuild_tensor / _rebuild_parameter.
NodePtr reduce(Builder& values, const Node& callable, const Node& args);

// NEWOBJ: collections.OrderedDict or torch.nn.parameter.Parameter, with no arguments.
NodePtr newobj(Builder& values, const Node& cls, const Node& args);

// BUILD of `target` (the stack's top) with `state`: gives a pending Parameter its data; an OrderedDict's state
// (its _metadata attribute) is ignored.
void build(Builder& values, Node& target, const Node& state);

}  // namespace tl::pickle::detail
