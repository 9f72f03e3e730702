#include "weights/pickle_value.h"

#include "engine/error.h"

namespace tl::pickle {

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::None: return "none";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "string";
    case Value::Kind::Bytes: return "bytes";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Global: return "global";
    case Value::Kind::Persistent: return "persistent";
    case Value::Kind::Tensor: return "tensor";
  }
  return "?";
}

const char* Value::kind_name() const { return pickle::kind_name(kind); }

namespace {
void expect(const Value& v, Value::Kind wanted) {
  if (v.kind != wanted) throw Error(str("pickle: expected ", kind_name(wanted), ", got ", v.kind_name()));
}
}  // namespace

const std::string& Value::as_string() const {
  expect(*this, Kind::String);
  return text;
}

int64_t Value::as_int() const {
  expect(*this, Kind::Int);
  return integer;
}

const std::vector<ValuePtr>& Value::as_tuple() const {
  expect(*this, Kind::Tuple);
  return items;
}

}  // namespace tl::pickle
