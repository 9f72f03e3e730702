#pragma once
// A small strict JSON parser (RFC 8259) for checkpoint headers, which come from untrusted files.
// Strict means: no comments, no trailing commas, no NaN/Infinity, no leading zeros, no control
// characters or invalid UTF-8 inside strings, no lone surrogates, no duplicate object keys, nothing
// but whitespace after the value. Nesting is limited to kMaxDepth so a hostile input cannot
// exhaust the stack. Every error is a tl::Error naming the byte offset where parsing stopped.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace tl::json {

constexpr int kMaxDepth = 64;

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;  // insertion order, keys unique

class Value {
 public:
  enum class Type { Null, Bool, Int, Double, String, Array, Object };

  Value() = default;
  explicit Value(bool b) : data_(b) {}
  explicit Value(int64_t i) : data_(i) {}
  explicit Value(double d) : data_(d) {}
  explicit Value(std::string s) : data_(std::move(s)) {}
  explicit Value(const char* s) : data_(std::string(s)) {}  // else a literal would pick the bool constructor
  explicit Value(Array a) : data_(std::move(a)) {}
  explicit Value(Object o) : data_(std::move(o)) {}

  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_null() const { return type() == Type::Null; }
  bool is_bool() const { return type() == Type::Bool; }
  // Integers without fraction or exponent that fit in int64 are Int; every other number is Double.
  bool is_int() const { return type() == Type::Int; }
  bool is_double() const { return type() == Type::Double; }
  bool is_number() const { return is_int() || is_double(); }
  bool is_string() const { return type() == Type::String; }
  bool is_array() const { return type() == Type::Array; }
  bool is_object() const { return type() == Type::Object; }

  // Typed access; throws tl::Error naming the expected and actual type on a mismatch.
  bool as_bool() const;
  int64_t as_int() const;
  double as_number() const;  // Int or Double
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Object member lookup; nullptr when absent (throws when this is not an object).
  const Value* find(std::string_view key) const;

 private:
  std::variant<std::monostate, bool, int64_t, double, std::string, Array, Object> data_;
};

const char* type_name(Value::Type type);

// Parses one JSON document. Throws tl::Error "invalid JSON at byte N: <what>".
Value parse(std::string_view text);

// The quoted JSON string literal for `text` ("a\"b" -> "\"a\\\"b\""): escapes quote, backslash and
// control characters; other characters pass through as UTF-8. Throws tl::Error on invalid UTF-8, so
// nothing we write can fail to parse back.
std::string escape_string(std::string_view text);

// Whether `text` is well-formed UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(std::string_view text);

// Appends the UTF-8 encoding of a Unicode code point (the caller has checked it is a valid scalar value).
void append_utf8(std::string& out, uint32_t code_point);

}  // namespace tl::json
