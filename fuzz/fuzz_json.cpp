// Fuzz target: the strict JSON parser (weights/json.h) that reads every safetensors header.
//
// tl::Error is the expected rejection. Beyond "no crash", the target aborts (a finding) when:
//   - a parsed object holds a duplicate key, or a string that is not valid UTF-8;
//   - printing what was parsed and parsing the print does not give the same value back (bit for bit
//     for doubles, Int stays Int, Double stays Double);
//   - escape_string() disagrees with is_valid_utf8() on the raw input, or its output does not parse
//     back to the same string.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>

#include "engine/error.h"
#include "weights/json.h"

namespace {

using tl::json::Value;

[[noreturn]] void broken_promise(const std::string& what) {
  std::fprintf(stderr, "fuzz_json: %s\n", what.c_str());
  std::abort();
}

// A canonical print: compact, doubles in their shortest round-trip form and always with a '.' or an
// exponent, so that a Double never reads back as an Int (-0.0 would print as "-0").
void print(const Value& v, std::string& out) {
  switch (v.type()) {
    case Value::Type::Null: out += "null"; break;
    case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; break;
    case Value::Type::Int: out += std::to_string(v.as_int()); break;
    case Value::Type::Double: {
      char buf[64];
      auto r = std::to_chars(buf, buf + sizeof buf, v.as_number());
      std::string s(buf, r.ptr);
      if (s.find_first_of(".e") == std::string::npos) s += ".0";
      out += s;
      break;
    }
    case Value::Type::String: out += tl::json::escape_string(v.as_string()); break;
    case Value::Type::Array: {
      out += '[';
      bool first = true;
      for (const Value& item : v.as_array()) {
        if (!first) out += ',';
        first = false;
        print(item, out);
      }
      out += ']';
      break;
    }
    case Value::Type::Object: {
      out += '{';
      std::set<std::string> keys;
      bool first = true;
      for (const auto& [key, item] : v.as_object()) {
        if (!keys.insert(key).second) broken_promise("parsed object holds duplicate key " + key);
        if (!first) out += ',';
        first = false;
        out += tl::json::escape_string(key);
        out += ':';
        print(item, out);
      }
      out += '}';
      break;
    }
  }
}

std::string print(const Value& v) {
  std::string out;
  print(v, out);
  return out;
}

void check_escape(std::string_view text) {
  const bool valid = tl::json::is_valid_utf8(text);
  std::string quoted;
  try {
    quoted = tl::json::escape_string(text);
  } catch (const tl::Error&) {
    if (valid) broken_promise("escape_string refused valid UTF-8");
    return;
  }
  if (!valid) broken_promise("escape_string accepted invalid UTF-8");
  Value back;
  try {
    back = tl::json::parse(quoted);
  } catch (const tl::Error& e) {
    broken_promise(std::string("escape_string output does not parse: ") + e.what());
  }
  if (!back.is_string() || back.as_string() != text) broken_promise("escape_string does not round-trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_escape(text);

  Value value;
  try {
    value = tl::json::parse(text);
  } catch (const tl::Error&) {
    return 0;
  }
  // print() throws tl::Error only on invalid UTF-8, which the parser must never have let through.
  std::string printed;
  try {
    printed = print(value);
  } catch (const tl::Error& e) {
    broken_promise(std::string("parsed value holds a string that cannot be written: ") + e.what());
  }
  Value again;
  try {
    again = tl::json::parse(printed);
  } catch (const tl::Error& e) {
    broken_promise("the print of a parsed value does not parse: " + printed + ": " + e.what());
  }
  if (print(again) != printed) broken_promise("print/parse does not round-trip: " + printed);
  return 0;
}
