#pragma once
// The values the restricted unpickler (weights/pickle.h) builds from a PyTorch checkpoint's pickle.
// Only what a state_dict contains has a kind here; there is no "object" kind, because the unpickler never
// constructs arbitrary Python objects.
//
// Values may be shared: a memo GET puts the same value in two places, so the result is a directed acyclic
// graph, not always a tree (the unpickler rejects cycles). A generic recursive walk can therefore visit a value
// many times; walk only the parts you need (a state_dict's entries, a tensor's storage).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tl::pickle {

struct Value;
using ValuePtr = std::shared_ptr<const Value>;

// Result of torch._utils._rebuild_tensor_v2 / _rebuild_tensor: where a tensor's elements live in its storage.
struct TensorRef {
  ValuePtr storage;  // the persistent-id value (Kind::Persistent) exactly as unpickled
  int64_t storage_offset = 0;
  std::vector<int64_t> size, stride;
};

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Persistent, Tensor };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                                    // String (UTF-8) and Bytes
  std::vector<ValuePtr> items;                         // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // Dict and OrderedDict, insertion order
  std::string module, name;                            // Global (only allow-listed globals ever appear)
  ValuePtr persistent_id;                              // Persistent: the pid object (a tuple, or a string/int key)
  TensorRef tensor;                                    // Tensor

  // Checked accessors throwing tl::Error("pickle: expected <kind>, got <kind>").
  const std::string& as_string() const;
  int64_t as_int() const;
  const std::vector<ValuePtr>& as_tuple() const;
  // "none", "bool", "int", "float", "string", "bytes", "tuple", "list", "dict", "global", "persistent", "tensor".
  const char* kind_name() const;
};

const char* kind_name(Value::Kind kind);

}  // namespace tl::pickle
