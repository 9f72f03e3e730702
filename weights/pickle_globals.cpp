#include "weights/pickle_globals.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "engine/error.h"
#include "weights/pickle_text.h"

namespace tl::pickle::detail {
namespace {

constexpr std::string_view kAllowedGlobals[] = {
    "collections.OrderedDict",      "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter", "torch.FloatStorage",           "torch.DoubleStorage",
    "torch.HalfStorage",            "torch.BFloat16Storage",           "torch.LongStorage",
    "torch.IntStorage",             "torch.ShortStorage",              "torch.CharStorage",
    "torch.ByteStorage",            "torch.BoolStorage",
    // The tar layout's 'tensors' member names each tensor's class; like the storages, these are only values.
    "torch.FloatTensor",            "torch.DoubleTensor",              "torch.HalfTensor",
    "torch.BFloat16Tensor",         "torch.LongTensor",                "torch.IntTensor",
    "torch.ShortTensor",            "torch.CharTensor",                "torch.ByteTensor",
    "torch.BoolTensor",
};

std::string qualified_name(const Node& g) { return g.module + "." + g.name; }

std::vector<int64_t> int_tuple(Builder& values, const std::string& callee, const ValuePtr& v, const char* what) {
  if (v->kind != Kind::Tuple) values.fail(str(callee, ": ", what, " is a ", v->kind_name(), ", not a tuple"));
  // Each tensor copies these, and the memo can hand the same tuple to many tensors: bound the copy.
  if (v->items.size() > kMaxRank) values.fail(str(callee, ": ", what, " has more than ", kMaxRank, " dimensions"));
  std::vector<int64_t> out;
  for (const ValuePtr& item : v->items) {
    if (item->kind != Kind::Int || item->integer < 0)
      values.fail(str(callee, ": ", what, " must hold non-negative ints"));
    out.push_back(item->integer);
  }
  return out;
}

NodePtr rebuild_tensor(Builder& values, const Node& args, const std::string& callee, size_t min_args,
                       size_t max_args) {
  const std::vector<ValuePtr>& a = args.items;
  if (a.size() < min_args || a.size() > max_args)
    values.fail(str(callee, " takes ", min_args, min_args == max_args ? "" : str(" or ", max_args),
                    " arguments, got ", a.size()));
  if (a[0]->kind != Kind::Persistent)
    values.fail(str(callee, ": storage is a ", a[0]->kind_name(), ", not a persistent id"));
  if (a[1]->kind != Kind::Int || a[1]->integer < 0)
    values.fail(str(callee, ": storage offset must be a non-negative int"));
  NodePtr t = values.make(Kind::Tensor);
  t->tensor.storage = a[0];
  t->tensor.storage_offset = a[1]->integer;
  t->tensor.size = int_tuple(values, callee, a[2], "size");
  t->tensor.stride = int_tuple(values, callee, a[3], "stride");
  if (t->tensor.size.size() != t->tensor.stride.size())
    values.fail(str(callee, ": size has ", t->tensor.size.size(), " dimensions, stride ", t->tensor.stride.size()));
  if (a.size() > 4 && a[4]->kind != Kind::Bool) values.fail(str(callee, ": requires_grad is a ", a[4]->kind_name()));
  values.add_height(*t, node_of(a[0]).height);
  return t;
}

// BUILD of a Parameter from the 2017 tar layout: the Parameter becomes its data (a persistent tensor key), as
// torch's Variable.__setstate__ takes state[0] as the data and ignores the grad, hooks and flags.
void build_parameter(Builder& values, Node& parameter, const Node& state) {
  if (state.kind != Kind::Tuple || state.items.size() != 5 ||
      (state.items[0]->kind != Kind::Persistent && state.items[0]->kind != Kind::Tensor))
    values.fail(str("the state of a '", kParameterClass,
                    "' must be (data, grad, hooks, requires_grad, volatile) with persistent or tensor data"));
  const Node& data = node_of(state.items[0]);
  parameter.kind = data.kind;
  parameter.persistent_id = data.persistent_id;
  parameter.tensor = data.tensor;
  parameter.height = data.height;
  parameter.role = Role::Value;
}

}  // namespace

NodePtr make_global(Builder& values, std::string_view module, std::string_view name) {
  std::string qualified = str(module, ".", name);
  bool parameter = qualified == kParameterClass;
  if (!parameter &&
      std::find(std::begin(kAllowedGlobals), std::end(kAllowedGlobals), qualified) == std::end(kAllowedGlobals))
    throw Error(str(values.prefix(), "pickle global '", printable(qualified), "' is not allowed in a checkpoint"));
  NodePtr g = values.make(Kind::Global);
  g->module = module;
  g->name = name;
  if (parameter) g->role = Role::ParameterClass;
  return g;
}

NodePtr reduce(Builder& values, const Node& callable, const Node& args) {
  if (callable.kind != Kind::Global) values.fail(str("REDUCE can only call a global, not a ", callable.kind_name()));
  if (args.kind != Kind::Tuple) values.fail(str("REDUCE arguments must be a tuple, not a ", args.kind_name()));
  std::string callee = qualified_name(callable);
  if (callee == "collections.OrderedDict") {
    if (!args.items.empty())
      values.fail(str("collections.OrderedDict called with ", args.items.size(), " arguments"));
    return values.make(Kind::Dict);
  }
  if (callee == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(values, args, callee, 6, 7);
  if (callee == "torch._utils._rebuild_tensor") return rebuild_tensor(values, args, callee, 4, 4);
  if (callee == "torch._utils._rebuild_parameter") {
    if (args.items.size() != 3) values.fail(str(callee, " takes 3 arguments, got ", args.items.size()));
    const ValuePtr& tensor = args.items[0];
    if (tensor->kind != Kind::Tensor)
      values.fail(str(callee, ": argument 1 is a ", tensor->kind_name(), ", not a tensor"));
    return std::const_pointer_cast<Node>(std::static_pointer_cast<const Node>(tensor));
  }
  values.fail(str("calling '", callee, "' is not allowed in a checkpoint"));
}

NodePtr newobj(Builder& values, const Node& cls, const Node& args) {
  if (cls.kind != Kind::Global) values.fail(str("NEWOBJ needs a class, not a ", cls.kind_name()));
  std::string callee = qualified_name(cls);
  bool no_args = args.kind == Kind::Tuple && args.items.empty();
  if (cls.role == Role::ParameterClass && no_args) {
    NodePtr p = values.make(Kind::None);  // becomes its data at BUILD
    p->role = Role::PendingParameter;
    return p;
  }
  if (callee != "collections.OrderedDict" || !no_args)
    values.fail(str("creating '", callee, "' with NEWOBJ is not allowed in a checkpoint"));
  return values.make(Kind::Dict);
}

void build(Builder& values, Node& target, const Node& state) {
  if (target.role == Role::PendingParameter) return build_parameter(values, target, state);
  if (target.kind != Kind::Dict) values.fail(str("BUILD on a ", target.kind_name(), " is not allowed in a checkpoint"));
}

}  // namespace tl::pickle::detail
