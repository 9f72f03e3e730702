#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "engine/error.h"
#include "weights/json.h"

using namespace tl;

namespace {
// The message parse() throws for `text`, or "" when it parses.
std::string parse_error(std::string_view text) {
  try {
    json::parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("json parses every kind of value and keeps object members in insertion order") {
  json::Value v = json::parse(R"( {"z": null, "a": [true, false, 1, -2.5, "s"], "m": {}} )");
  REQUIRE(v.is_object());
  const json::Object& o = v.as_object();
  REQUIRE(o.size() == 3);
  CHECK(o[0].first == "z");
  CHECK(o[1].first == "a");
  CHECK(o[2].first == "m");
  CHECK(o[0].second.is_null());
  const json::Array& a = v.find("a")->as_array();
  REQUIRE(a.size() == 5);
  CHECK(a[0].as_bool() == true);
  CHECK(a[1].as_bool() == false);
  CHECK(a[2].as_int() == 1);
  CHECK(a[3].as_number() == -2.5);
  CHECK(a[4].as_string() == "s");
  CHECK(v.find("m")->as_object().empty());
  CHECK(v.find("absent") == nullptr);
  CHECK(json::parse("[]").as_array().empty());
  CHECK(json::parse("\t\r\n 7 \n").as_int() == 7);
}

TEST_CASE("json typed access names both types on a mismatch") {
  json::Value v = json::parse("\"text\"");
  CHECK_THROWS_WITH_AS(v.as_int(), "JSON value is string, expected integer", Error);
  CHECK_THROWS_WITH_AS(json::parse("1.5").as_int(), "JSON value is number, expected integer", Error);
  CHECK_THROWS_WITH_AS(json::parse("[]").find("k"), "JSON value is array, expected object", Error);
}

TEST_CASE("json string escapes decode to UTF-8") {
  CHECK(json::parse(R"("\"\\\/\b\f\n\r\t")").as_string() == "\"\\/\b\f\n\r\t");
  CHECK(json::parse(R"("\u0041\u00e9\u20AC")").as_string() == "A\xC3\xA9\xE2\x82\xAC");
  CHECK(json::parse(R"("\u0000")").as_string() == std::string(1, '\0'));
  // Raw UTF-8 passes through untouched.
  CHECK(json::parse("\"na\xC3\xAFve \xE2\x98\x83\"").as_string() == "na\xC3\xAFve \xE2\x98\x83");
}

TEST_CASE("json surrogate pairs combine; lone surrogates are rejected") {
  CHECK(json::parse(R"("\uD83D\uDE00")").as_string() == "\xF0\x9F\x98\x80");  // U+1F600
  CHECK(json::parse(R"("\udbff\udfff")").as_string() == "\xF4\x8F\xBF\xBF");  // U+10FFFF
  CHECK(parse_error(R"("\uD83D")") == "invalid JSON at byte 7: high surrogate not followed by a low surrogate");
  CHECK(parse_error(R"("\uD83Dx")") == "invalid JSON at byte 7: high surrogate not followed by a low surrogate");
  CHECK(parse_error(R"("\uD83D\u0041")") ==
        "invalid JSON at byte 13: high surrogate not followed by a low surrogate");
  CHECK(parse_error(R"("\uDE00")") == "invalid JSON at byte 7: lone low surrogate in \\u escape");
  CHECK(parse_error(R"("\u12G4")") == "invalid JSON at byte 5: invalid hex digit in \\u escape");
  CHECK(parse_error(R"("\u12)") == "invalid JSON at byte 3: truncated \\u escape");
}

TEST_CASE("json rejects malformed strings with the byte offset") {
  CHECK(parse_error(R"("\x")") == "invalid JSON at byte 2: invalid escape \\'x'");
  CHECK(parse_error("\"a\nb\"") == "invalid JSON at byte 2: unescaped control character in string");
  CHECK(parse_error("\"abc") == "invalid JSON at byte 4: unterminated string");
  CHECK(parse_error("\"abc\\") == "invalid JSON at byte 5: unterminated escape");
  // Invalid UTF-8: overlong NUL, an encoded surrogate, a byte that never starts a sequence, a cut sequence,
  // a code point past U+10FFFF.
  for (std::string bad : {"\xC0\x80", "\xED\xA0\x80", "\xF5\x80\x80\x80", "\xE2\x82", "\xF4\x90\x80\x80", "\x80"}) {
    CAPTURE(bad);
    CHECK(parse_error("\"a" + bad + "\"") == "invalid JSON at byte 2: invalid UTF-8 in string");
    CHECK_FALSE(json::is_valid_utf8(bad));
  }
  CHECK(parse_error("\xFF") == "invalid JSON at byte 0: unexpected character byte 0xff, expected a value");
}

TEST_CASE("json nesting is limited to 64 levels, without exhausting the stack") {
  std::string ok = std::string(json::kMaxDepth, '[') + std::string(json::kMaxDepth, ']');
  CHECK(json::parse(ok).is_array());
  std::string deep = std::string(json::kMaxDepth + 1, '[') + std::string(json::kMaxDepth + 1, ']');
  CHECK(parse_error(deep) == "invalid JSON at byte 64: nesting deeper than 64 levels");
  std::string objects;
  for (int i = 0; i <= json::kMaxDepth; ++i) objects += "{\"k\":";
  CHECK(parse_error(objects) == "invalid JSON at byte 320: nesting deeper than 64 levels");
  // A hostile input far deeper than any stack could recurse stops at the limit.
  CHECK(parse_error(std::string(1'000'000, '[')) == "invalid JSON at byte 64: nesting deeper than 64 levels");
}

TEST_CASE("json rejects trailing garbage, trailing commas and empty input") {
  CHECK(parse_error("{} x") == "invalid JSON at byte 3: unexpected trailing characters after the JSON value");
  CHECK(parse_error("1 2") == "invalid JSON at byte 2: unexpected trailing characters after the JSON value");
  CHECK(parse_error("[1,]") == "invalid JSON at byte 3: unexpected character ']', expected a value");
  CHECK(parse_error("{\"a\":1,}") == "invalid JSON at byte 7: expected a string key in object");
  CHECK(parse_error("{\"a\" 1}") == "invalid JSON at byte 5: expected ':' after object key");
  CHECK(parse_error("[1 2]") == "invalid JSON at byte 3: expected ',' or ']' in array");
  CHECK(parse_error("{\"a\":1 \"b\":2}") == "invalid JSON at byte 7: expected ',' or '}' in object");
  CHECK(parse_error("") == "invalid JSON at byte 0: unexpected end of input, expected a value");
  CHECK(parse_error("   ") == "invalid JSON at byte 3: unexpected end of input, expected a value");
  CHECK(parse_error("[") == "invalid JSON at byte 1: unexpected end of input, expected a value");
  CHECK(parse_error("tru") == "invalid JSON at byte 0: invalid literal (expected 'true')");
  CHECK(parse_error("nul1") == "invalid JSON at byte 0: invalid literal (expected 'null')");
  CHECK(parse_error("// c\n1") == "invalid JSON at byte 0: unexpected character '/', expected a value");
}

TEST_CASE("json rejects duplicate keys, naming the key and where it is") {
  CHECK(parse_error(R"({"a":1,"b":2,"a":3})") == "invalid JSON at byte 13: duplicate key \"a\"");
  // Keys compare after unescaping: "\u0061" is "a".
  CHECK(parse_error(R"({"a":1,"\u0061":3})") == "invalid JSON at byte 7: duplicate key \"a\"");
  // The same key in different objects is fine.
  CHECK(json::parse(R"({"a":{"a":1}})").is_object());
}

TEST_CASE("json numbers: integers exactly as int64 when they fit, else double") {
  CHECK(json::parse("0").as_int() == 0);
  CHECK(json::parse("-0").is_int());
  CHECK(json::parse("123456789012").as_int() == 123456789012);
  CHECK(json::parse("9223372036854775807").as_int() == std::numeric_limits<int64_t>::max());
  CHECK(json::parse("-9223372036854775808").as_int() == std::numeric_limits<int64_t>::min());
  json::Value big = json::parse("9223372036854775808");
  CHECK(big.is_double());
  CHECK(big.as_number() == 9223372036854775808.0);
  CHECK(json::parse("1e3").is_double());
  CHECK(json::parse("1e3").as_number() == 1000.0);
  CHECK(json::parse("-1.25e-2").as_number() == -0.0125);
  CHECK(json::parse("2.5E+1").as_number() == 25.0);
  CHECK(json::parse("0.1").as_number() == 0.1);  // correctly rounded, as from_chars guarantees
  CHECK(parse_error("01") == "invalid JSON at byte 1: leading zero in number");
  CHECK(parse_error("-01") == "invalid JSON at byte 2: leading zero in number");
  CHECK(parse_error("1.") == "invalid JSON at byte 2: expected digits after the decimal point");
  CHECK(parse_error(".5") == "invalid JSON at byte 0: unexpected character '.', expected a value");
  CHECK(parse_error("+1") == "invalid JSON at byte 0: unexpected character '+', expected a value");
  CHECK(parse_error("-") == "invalid JSON at byte 1: expected digits in number");
  CHECK(parse_error("1e") == "invalid JSON at byte 2: expected digits in exponent");
  CHECK(parse_error("1e+") == "invalid JSON at byte 3: expected digits in exponent");
  CHECK(parse_error("0x10") == "invalid JSON at byte 1: unexpected trailing characters after the JSON value");
  CHECK(parse_error("NaN") == "invalid JSON at byte 0: unexpected character 'N', expected a value");
  CHECK(parse_error("Infinity") == "invalid JSON at byte 0: unexpected character 'I', expected a value");
  CHECK(parse_error("[1e400]") == "invalid JSON at byte 1: number out of double range");
}

TEST_CASE("json escape_string round-trips every character and refuses invalid UTF-8") {
  std::string all;
  for (int c = 0; c < 128; ++c) all += static_cast<char>(c);
  all += "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  std::string quoted = json::escape_string(all);
  CHECK(json::parse(quoted).as_string() == all);
  CHECK(json::escape_string("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
  CHECK_THROWS_WITH_AS(json::escape_string("bad \xFF"), "cannot write string as JSON: it is not valid UTF-8", Error);
}
