#pragma once
// Internal to the unpickler (weights/pickle.h): the values it creates, and the Builder that creates them under
// the limits of pickle.h. The opcode machine (pickle.cpp) and the allowed globals (pickle_globals.cpp) share it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "weights/pickle.h"

namespace tl::pickle::detail {

using Kind = Value::Kind;

// Where the unpickler is, for its errors: "<context>: pickle: <what> (opcode <NAME> at byte <N>)".
struct Position {
  std::string prefix;  // "<context>: ", or empty
  size_t op_pos = 0;
  uint8_t op = 0;
  [[noreturn]] void fail(const std::string& what) const;
};

// The identity of a dict key under Python's equality, for the key kinds we accept: strings and bytes are
// interned, so equal text means the same node; ints and bools compare by value (True == 1); None by kind.
struct KeyId {
  int tag = 0;
  const void* node = nullptr;
  int64_t integer = 0;
  bool operator==(const KeyId&) const = default;
};
struct KeyIdHash {
  size_t operator()(const KeyId& k) const {
    return std::hash<const void*>()(k.node) ^ (std::hash<int64_t>()(k.integer) * 31u) ^ static_cast<size_t>(k.tag);
  }
};

constexpr std::string_view kParameterClass = "torch.nn.parameter.Parameter";

// Roles of the internal nodes behind torch.nn.parameter.Parameter in the 2017 tar layout, which pickles a
// Parameter as NEWOBJ(Parameter, ()) then BUILD((data, grad, hooks, requires_grad, volatile)). Neither the class
// nor an instance before its BUILD may be nested anywhere or returned, so they never reach the caller.
enum class Role : uint8_t { Value, ParameterClass, PendingParameter };

// Every value the unpickler creates is a Node: the public Value plus the bookkeeping that keeps hostile input
// cheap. A value becomes `sealed` when it is nested inside another; a sealed container can no longer change,
// so no cycle can ever form and `height` (the nesting depth below it) is exact once computed.
struct Node : Value {
  int height = 1;
  bool sealed = false;
  Role role = Role::Value;
  std::unique_ptr<std::unordered_map<KeyId, size_t, KeyIdHash>> key_index;  // a mutable Dict's key positions
};
using NodePtr = std::shared_ptr<Node>;

inline const Node& node_of(const ValuePtr& v) { return static_cast<const Node&>(*v); }

// Creates values (at most kMaxValues), nests them (at most kMaxDepth deep, never into a sealed container) and
// reports what is wrong at the opcode `at` points to.
class Builder {
 public:
  explicit Builder(const Position& at) : at_(at) {}
  [[noreturn]] void fail(const std::string& what) const { at_.fail(what); }
  const std::string& prefix() const { return at_.prefix; }

  NodePtr make(Kind kind);
  NodePtr make_int(int64_t i);
  NodePtr make_bool(bool b);
  // Strings and bytes are interned, so that equal dict keys are the same node (see KeyId).
  NodePtr make_text(Kind kind, std::string text);
  NodePtr make_int_from_le(const uint8_t* p, uint64_t n);  // LONG1/LONG4: little-endian two's complement
  NodePtr make_tuple(std::vector<NodePtr> items);
  NodePtr make_persistent(NodePtr pid);

  void append(Node& list, NodePtr item);
  void set_item(Node& dict, NodePtr key, NodePtr value);
  void set_items(Node& dict, std::vector<NodePtr>& items);

  static void seal(Node& v);
  void add_height(Node& parent, int child_height);
  void require_value(const Node& v);  // not the Parameter class, nor a Parameter before its BUILD

 private:
  void nest(Node& parent, Node& child);
  void require_mutable(const Node& container);
  KeyId key_id(const Node& key);

  const Position& at_;
  size_t values_ = 0;
  std::unordered_map<std::string_view, NodePtr> strings_, bytes_;
};

}  // namespace tl::pickle::detail
