// Fuzz target: the restricted unpickler (weights/pickle.h) that reads every .pth checkpoint.
//
// tl::Error is the expected rejection. Like a legacy .pth, the input may hold several pickles back to
// back: each accepted one is followed by the next, from where it stopped. Beyond "no crash", the
// target aborts (a finding) when:
//   - an error message does not start with the context ("fuzz: ...");
//   - unpickle() reports consuming nothing, or more bytes than it was given;
//   - the result holds a null value, a Global outside the allow-list (or the Parameter class, which
//     may never be returned), a Persistent without its id, or a Tensor without its storage;
//   - a checked accessor called on the wrong kind throws anything but tl::Error.
// The walk over the result visits each node once (results may share nodes through the memo), and
// gives up after a bound, so a hostile DAG cannot make the target itself slow.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "engine/error.h"
#include "weights/pickle.h"

namespace {

using tl::pickle::Value;
using tl::pickle::ValuePtr;

constexpr int kMaxPicklesPerInput = 4;
constexpr size_t kMaxNodesVisited = 100000;

[[noreturn]] void broken_promise(const std::string& what) {
  std::fprintf(stderr, "fuzz_pickle: %s\n", what.c_str());
  std::abort();
}

// The globals weights/pickle.h lets through. torch.nn.parameter.Parameter is accepted only as NEWOBJ's
// class and becomes its data, so it must never appear in a result.
std::set<std::string> allowed_globals() {
  std::set<std::string> names = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                 "torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter"};
  for (const char* x : {"Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool"}) {
    names.insert(std::string("torch.") + x + "Storage");
    names.insert(std::string("torch.") + x + "Tensor");
  }
  return names;
}
const std::set<std::string> kAllowedGlobals = allowed_globals();

// Each accessor of the wrong kind must throw tl::Error, and only that.
template <class F>
void expect_refusal(const Value& v, const char* accessor, F call) {
  try {
    call();
  } catch (const tl::Error&) {
    return;
  }
  broken_promise(std::string(accessor) + " accepted a " + v.kind_name());
}

void check_node(const Value& v) {
  using Kind = Value::Kind;
  (void)v.kind_name();
  if (v.kind != Kind::String && v.kind != Kind::Bytes) expect_refusal(v, "as_string", [&] { (void)v.as_string(); });
  if (v.kind != Kind::Int && v.kind != Kind::Bool) expect_refusal(v, "as_int", [&] { (void)v.as_int(); });
  if (v.kind != Kind::Tuple) expect_refusal(v, "as_tuple", [&] { (void)v.as_tuple(); });
  if (v.kind == Kind::Global && !kAllowedGlobals.count(v.module + "." + v.name))
    broken_promise("result holds global '" + v.module + "." + v.name + "' outside the allow-list");
  if (v.kind == Kind::Persistent && !v.persistent_id) broken_promise("Persistent value without its id");
  if (v.kind == Kind::Tensor && !v.tensor.storage) broken_promise("Tensor value without its storage");
}

void walk(const ValuePtr& root) {
  std::unordered_set<const Value*> seen;
  std::vector<const Value*> todo;
  auto push = [&](const ValuePtr& p) {
    if (!p) broken_promise("result holds a null value");
    if (seen.insert(p.get()).second) todo.push_back(p.get());
  };
  push(root);
  while (!todo.empty() && seen.size() < kMaxNodesVisited) {
    const Value* v = todo.back();
    todo.pop_back();
    check_node(*v);
    for (const ValuePtr& item : v->items) push(item);
    for (const auto& [key, value] : v->entries) {
      push(key);
      push(value);
    }
    if (v->persistent_id) push(v->persistent_id);
    if (v->tensor.storage) push(v->tensor.storage);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string context = "fuzz";
  size_t offset = 0;
  for (int i = 0; i < kMaxPicklesPerInput && offset < size; ++i) {
    size_t consumed = 0;
    ValuePtr result;
    try {
      result = tl::pickle::unpickle(data + offset, size - offset, context, &consumed);
    } catch (const tl::Error& e) {
      if (std::string(e.what()).rfind(context + ": ", 0) != 0)
        broken_promise(std::string("error does not start with the context: ") + e.what());
      return 0;
    }
    if (consumed == 0 || consumed > size - offset)
      broken_promise("consumed " + std::to_string(consumed) + " of " + std::to_string(size - offset) + " bytes");
    walk(result);
    offset += consumed;
  }
  return 0;
}
