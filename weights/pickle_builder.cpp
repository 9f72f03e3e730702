#include "weights/pickle_builder.h"

#include <algorithm>

#include "engine/error.h"
#include "weights/json.h"
#include "weights/pickle_text.h"

namespace tl::pickle::detail {

void Position::fail(const std::string& what) const {
  const char* name = opcode_name(op);
  static const char* hex = "0123456789abcdef";
  std::string op_text = name ? name : str("0x", hex[op >> 4], hex[op & 15]);
  throw Error(str(prefix, "pickle: ", what, " (opcode ", op_text, " at byte ", op_pos, ")"));
}

NodePtr Builder::make(Kind kind) {
  if (++values_ > kMaxValues) fail(str("more than ", kMaxValues, " values"));
  auto v = std::make_shared<Node>();
  v->kind = kind;
  return v;
}

NodePtr Builder::make_int(int64_t i) {
  NodePtr v = make(Kind::Int);
  v->integer = i;
  return v;
}

NodePtr Builder::make_bool(bool b) {
  NodePtr v = make(Kind::Bool);
  v->boolean = b;
  return v;
}

NodePtr Builder::make_text(Kind kind, std::string text) {
  if (kind == Kind::String && !json::is_valid_utf8(text)) fail("string is not valid UTF-8");
  auto& table = kind == Kind::String ? strings_ : bytes_;
  auto it = table.find(text);
  if (it != table.end()) return it->second;
  NodePtr v = make(kind);
  v->text = std::move(text);
  table.emplace(std::string_view(v->text), v);  // the view points into the node, which never moves
  return v;
}

NodePtr Builder::make_int_from_le(const uint8_t* p, uint64_t n) {
  if (n == 0) return make_int(0);
  size_t low = static_cast<size_t>(std::min<uint64_t>(n, 8));
  bool negative = p[low - 1] & 0x80;
  for (uint64_t i = 8; i < n; ++i)
    if (p[i] != (negative ? 0xFF : 0x00)) fail(str("integer of ", n, " bytes does not fit in 64 bits"));
  uint64_t v = negative ? ~uint64_t(0) : 0;
  for (size_t i = low; i-- > 0;) v = (v << 8) | p[i];
  return make_int(static_cast<int64_t>(v));
}

NodePtr Builder::make_tuple(std::vector<NodePtr> items) {
  NodePtr t = make(Kind::Tuple);
  t->items.reserve(items.size());
  for (NodePtr& item : items) {
    nest(*t, *item);
    t->items.push_back(std::move(item));
  }
  return t;
}

NodePtr Builder::make_persistent(NodePtr pid) {
  NodePtr p = make(Kind::Persistent);
  nest(*p, *pid);
  p->persistent_id = std::move(pid);
  return p;
}

void Builder::append(Node& list, NodePtr item) {
  nest(list, *item);  // seals first, so appending a list to itself is caught below
  require_mutable(list);
  list.items.push_back(std::move(item));
}

void Builder::set_item(Node& dict, NodePtr key, NodePtr value) {
  KeyId id = key_id(*key);
  nest(dict, *key);
  nest(dict, *value);
  require_mutable(dict);
  if (!dict.key_index) dict.key_index = std::make_unique<std::unordered_map<KeyId, size_t, KeyIdHash>>();
  auto [it, inserted] = dict.key_index->try_emplace(id, dict.entries.size());
  if (inserted)
    dict.entries.emplace_back(std::move(key), std::move(value));
  else
    dict.entries[it->second].second = std::move(value);  // Python keeps the first position
}

void Builder::set_items(Node& dict, std::vector<NodePtr>& items) {
  if (items.size() % 2 != 0) fail(str("odd number of items (", items.size(), ") for a dict"));
  for (size_t i = 0; i < items.size(); i += 2) set_item(dict, std::move(items[i]), std::move(items[i + 1]));
}

void Builder::seal(Node& v) {
  v.sealed = true;
  v.key_index.reset();
}

void Builder::add_height(Node& parent, int child_height) {
  if (child_height + 1 > kMaxDepth) fail(str("values nested deeper than ", kMaxDepth, " levels"));
  parent.height = std::max(parent.height, child_height + 1);
}

void Builder::require_value(const Node& v) {
  if (v.role == Role::ParameterClass) fail(str("'", kParameterClass, "' is only accepted as NEWOBJ's class"));
  if (v.role == Role::PendingParameter) fail(str("a '", kParameterClass, "' is used before BUILD gives it its data"));
}

void Builder::nest(Node& parent, Node& child) {
  require_value(child);
  seal(child);
  add_height(parent, child.height);
}

void Builder::require_mutable(const Node& container) {
  if (container.sealed)
    fail(str("cannot modify a ", container.kind_name(),
             " that is already nested in another value (a self-referencing pickle?)"));
}

KeyId Builder::key_id(const Node& key) {
  switch (key.kind) {
    case Kind::String: return {1, &key, 0};
    case Kind::Bytes: return {2, &key, 0};
    case Kind::Int: return {3, nullptr, key.integer};
    case Kind::Bool: return {3, nullptr, key.boolean ? 1 : 0};
    case Kind::None: return {4, nullptr, 0};
    default: fail(str("a dict key of kind ", key.kind_name(), " is not supported in a checkpoint"));
  }
}

}  // namespace tl::pickle::detail
