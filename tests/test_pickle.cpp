#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/error.h"
#include "support/test_util.h"
#include "weights/json.h"
#include "weights/pickle.h"

using namespace tl;
using pickle::Value;
using pickle::ValuePtr;
using Kind = Value::Kind;
namespace fs = std::filesystem;

namespace {

std::string fixture_path(const std::string& name) { return test::source_dir() + "/tests/fixtures/pickle/" + name; }

std::string read_fixture(const std::string& name) {
  std::ifstream in(fixture_path(name), std::ios::binary);
  REQUIRE_MESSAGE(in, "missing fixture ", name, " (run tests/fixtures/make_pickle_fixtures.py)");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

ValuePtr parse(const std::string& data, size_t offset = 0, size_t* consumed = nullptr) {
  return pickle::unpickle(reinterpret_cast<const uint8_t*>(data.data()) + offset, data.size() - offset, "t.pkl",
                          consumed);
}

// The message unpickle throws for `data`, or "" when it parses.
std::string parse_error(const std::string& data) {
  try {
    parse(data);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Little-endian n-byte integer, as the binary opcodes' arguments are written.
std::string le(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}
std::string op(int code) { return std::string(1, static_cast<char>(code)); }
std::string unicode(const std::string& s) { return "X" + le(s.size(), 4) + s; }  // BINUNICODE
const std::string kProto2 = "\x80\x02";

const Value& entry_value(const Value& dict, const std::string& key) {
  for (const auto& [k, v] : dict.entries)
    if (k->kind == Kind::String && k->text == key) return *v;
  FAIL("no key ", key);
  throw 0;
}

// Checks a state_dict pickle against the expectations the fixture script took from the tensors themselves.
void check_state_dict(const Value& root, size_t pid_items) {
  json::Value expected = json::parse(read_fixture("state_dict_expected.json"));
  const json::Array& entries = expected.find("entries")->as_array();
  REQUIRE(root.kind == Kind::Dict);
  REQUIRE(root.entries.size() == entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const json::Value& e = entries[i];
    const std::string& name = e.find("key")->as_string();
    CAPTURE(name);
    CHECK(root.entries[i].first->as_string() == name);
    const Value& t = *root.entries[i].second;
    REQUIRE(t.kind == Kind::Tensor);
    CHECK(t.tensor.storage_offset == e.find("offset")->as_int());
    std::vector<int64_t> size, stride;
    for (const json::Value& d : e.find("size")->as_array()) size.push_back(d.as_int());
    for (const json::Value& d : e.find("stride")->as_array()) stride.push_back(d.as_int());
    CHECK(t.tensor.size == size);
    CHECK(t.tensor.stride == stride);
    REQUIRE(t.tensor.storage->kind == Kind::Persistent);
    const std::vector<ValuePtr>& pid = t.tensor.storage->persistent_id->as_tuple();
    REQUIRE(pid.size() == pid_items);
    CHECK(pid[0]->as_string() == "storage");
    REQUIRE(pid[1]->kind == Kind::Global);
    CHECK(pid[1]->module == "torch");
    CHECK(pid[1]->name == e.find("storage_type")->as_string());
    CHECK(pid[2]->as_string() == e.find("storage_key")->as_string());
    CHECK(pid[3]->as_string() == e.find("location")->as_string());
    CHECK(pid[4]->as_int() == e.find("numel")->as_int());
    if (pid_items == 6) CHECK(pid[5]->kind == Kind::None);  // the legacy layout's view_metadata
  }
  // The OrderedDict's _metadata is BUILD state, which the unpickler ignores: no extra entries appear.
}

}  // namespace

TEST_CASE("pickle reads torch.save's data.pkl (protocol 2) with every key, storage, offset, size and stride") {
  std::string data = read_fixture("state_dict_p2.pkl");
  size_t consumed = 0;
  ValuePtr root = parse(data, 0, &consumed);
  CHECK(consumed == data.size());
  check_state_dict(*root, 5);
  // Tensors that view one storage share its persistent id and key.
  const Value& window = entry_value(*root, "window");
  const Value& window_t = entry_value(*root, "window_t");
  CHECK(window.tensor.storage->persistent_id->as_tuple()[2]->as_string() ==
        window_t.tensor.storage->persistent_id->as_tuple()[2]->as_string());
}

TEST_CASE("pickle reads the same state_dict written with protocols 1 and 4 (framing, STACK_GLOBAL, MEMOIZE)") {
  for (const char* name : {"state_dict_p1.pkl", "state_dict_p4.pkl"}) {
    CAPTURE(name);
    std::string data = read_fixture(name);
    size_t consumed = 0;
    ValuePtr root = parse(data, 0, &consumed);
    CHECK(consumed == data.size());
    check_state_dict(*root, 5);
  }
}

TEST_CASE("pickle reads the legacy stream's pickles back to back; its magic number does not fit in 64 bits") {
  std::string data = read_fixture("state_dict_legacy.pth");
  json::Value expected = json::parse(read_fixture("state_dict_expected.json"));
  std::vector<size_t> ends;
  for (const json::Value& e : expected.find("legacy_pickle_ends")->as_array()) ends.push_back(e.as_int());
  REQUIRE(ends.size() == 5);
  // The magic number 0x1950a86a20f9469cfc6c is a 10-byte LONG1: a reader matches those 15 bytes, not a value.
  CHECK(parse_error(data.substr(0, ends[0])) ==
        "t.pkl: pickle: integer of 10 bytes does not fit in 64 bits (opcode LONG1 at byte 2)");
  size_t consumed = 0;
  CHECK(parse(data, ends[0], &consumed)->as_int() == 1001);  // torch's PROTOCOL_VERSION
  CHECK(ends[0] + consumed == ends[1]);
  ValuePtr sys_info = parse(data, ends[1], &consumed);
  CHECK(ends[1] + consumed == ends[2]);
  CHECK(entry_value(*sys_info, "little_endian").boolean == true);
  // torch records struct's standard sizes ('=l' is 4 bytes), not the platform's.
  CHECK(entry_value(entry_value(*sys_info, "type_sizes"), "long").as_int() == 4);
  CHECK(entry_value(entry_value(*sys_info, "type_sizes"), "short").as_int() == 2);
  ValuePtr root = parse(data, ends[2], &consumed);
  CHECK(ends[2] + consumed == ends[3]);
  check_state_dict(*root, 6);
  ValuePtr keys = parse(data, ends[3], &consumed);
  CHECK(ends[3] + consumed == ends[4]);
  REQUIRE(keys->kind == Kind::List);
  std::vector<std::string> names;
  for (const ValuePtr& k : keys->items) names.push_back(k->as_string());
  CHECK(names == std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"});
}

TEST_CASE("pickle reads protocol 0 text opcodes and protocol 4 binary ones to the same plain values") {
  for (const char* name : {"plain_p0.pkl", "plain_p4.pkl"}) {
    CAPTURE(name);
    ValuePtr root = parse(read_fixture(name));
    REQUIRE(root->kind == Kind::Dict);
    REQUIRE(root->entries.size() == 7);
    CHECK(entry_value(*root, "int").as_int() == -7);
    CHECK(entry_value(*root, "big").as_int() == (int64_t(1) << 62));
    CHECK(entry_value(*root, "float").kind == Kind::Float);
    CHECK(entry_value(*root, "float").real == 1.5);
    CHECK(entry_value(*root, "text").as_string() == "caf\xC3\xA9 \xF0\x9F\x98\x80 \\u0041 'q'\n");
    const Value& list = entry_value(*root, "list");
    REQUIRE(list.kind == Kind::List);
    REQUIRE(list.items.size() == 3);
    CHECK(list.items[2]->as_int() == 3);
    const std::vector<ValuePtr>& tuple = entry_value(*root, "tuple").as_tuple();
    REQUIRE(tuple.size() == 3);
    CHECK(tuple[0]->kind == Kind::None);
    CHECK((tuple[1]->kind == Kind::Bool && tuple[1]->boolean));
    CHECK((tuple[2]->kind == Kind::Bool && !tuple[2]->boolean));
    const Value& b = entry_value(entry_value(entry_value(*root, "nested"), "a"), "b");
    CHECK((b.kind == Kind::List && b.items.empty()));
  }
}

TEST_CASE("pickle rejects code-running globals by name and runs nothing") {
  const std::string marker = "/tmp/tl_pickle_fixture_marker";  // what the evil pickles would `touch`
  fs::remove(marker);
  struct Case {
    const char* file;
    const char* global;
  };
  // Python writes os.system as posix.system on Linux, and builtins.eval as __builtin__.eval in protocol 2.
  for (Case c : {Case{"evil_os_system_p2.pkl", "posix.system"}, Case{"evil_os_system_p4.pkl", "posix.system"},
                 Case{"evil_eval.pkl", "__builtin__.eval"}, Case{"evil_in_state_dict.pkl", "posix.system"},
                 Case{"evil_torch_load.pkl", "torch.serialization.load"}}) {
    CAPTURE(c.file);
    std::string data = read_fixture(c.file);
    CHECK_THROWS_WITH_AS(pickle::unpickle(reinterpret_cast<const uint8_t*>(data.data()), data.size(), c.file),
                         (std::string(c.file) + ": pickle global '" + c.global + "' is not allowed in a checkpoint")
                             .c_str(),
                         Error);
    CHECK_FALSE(fs::exists(marker));
  }
}

TEST_CASE("pickle: every truncation of a valid pickle is an error, never a crash") {
  for (const char* name : {"state_dict_p2.pkl", "state_dict_p4.pkl", "plain_p0.pkl", "plain_p4.pkl"}) {
    CAPTURE(name);
    std::string data = read_fixture(name);
    for (size_t n = 0; n < data.size(); ++n) {
      CAPTURE(n);
      CHECK_THROWS_AS(parse(data.substr(0, n)), Error);
    }
  }
  CHECK(parse_error("") == "t.pkl: pickle: the data ends at byte 0 before the STOP opcode");
  CHECK(parse_error(kProto2 + "X" + le(5, 4) + "ab") ==
        "t.pkl: pickle: truncated: needs 5 argument bytes, only 2 left (opcode BINUNICODE at byte 2)");
  CHECK(parse_error("I12") == "t.pkl: pickle: truncated: no newline ends the argument (opcode INT at byte 0)");
}

TEST_CASE("pickle checks huge lengths against the remaining bytes before allocating") {
  CHECK(parse_error(kProto2 + op(0x8d) + le(uint64_t(1) << 63, 8) + ".") ==
        "t.pkl: pickle: truncated: needs 9223372036854775808 argument bytes, only 1 left (opcode BINUNICODE8 at "
        "byte 2)");
  CHECK(parse_error(kProto2 + op(0x8e) + le(~uint64_t(0), 8) + ".") ==
        "t.pkl: pickle: truncated: needs 18446744073709551615 argument bytes, only 1 left (opcode BINBYTES8 at "
        "byte 2)");
  CHECK(parse_error(kProto2 + "B" + le(0xFFFFFFFFu, 4) + ".") ==
        "t.pkl: pickle: truncated: needs 4294967295 argument bytes, only 1 left (opcode BINBYTES at byte 2)");
  CHECK(parse_error(kProto2 + op(0x8b) + le(0xFFFFFFF0u, 4) + ".") ==
        "t.pkl: pickle: truncated: needs 4294967280 argument bytes, only 1 left (opcode LONG4 at byte 2)");
  CHECK(parse_error("\x80\x04" + op(0x95) + le(100, 8) + "N.") ==
        "t.pkl: pickle: truncated: frame of 100 bytes, only 2 left (opcode FRAME at byte 2)");
  CHECK(parse_error(kProto2 + "T" + le(0xFFFFFFFFu, 4) + ".") ==
        "t.pkl: pickle: negative length -1 (opcode BINSTRING at byte 2)");
}

TEST_CASE("pickle names the opcode and byte of malformed input") {
  CHECK(parse_error(kProto2 + "N" + op(0xFF) + ".") == "t.pkl: pickle: unknown opcode (opcode 0xff at byte 3)");
  CHECK(parse_error("\x80\x06N.") == "t.pkl: pickle: unsupported protocol 6 (opcode PROTO at byte 0)");
  CHECK(parse_error(kProto2 + "N" + "h" + op(7) + ".") ==
        "t.pkl: pickle: memo key 7 is missing (opcode BINGET at byte 3)");
  CHECK(parse_error("g3\n.") == "t.pkl: pickle: memo key 3 is missing (opcode GET at byte 0)");
  CHECK(parse_error("Np-1\n.") == "t.pkl: pickle: bad memo key '-1' (opcode PUT at byte 1)");
  // Stack underflow, also across a MARK: values below the MARK are out of reach, as in Python.
  CHECK(parse_error(kProto2 + ".") == "t.pkl: pickle: 0 values on the stack, expected 1 (opcode STOP at byte 2)");
  CHECK(parse_error(kProto2 + "NN.") == "t.pkl: pickle: 2 values on the stack, expected 1 (opcode STOP at byte 4)");
  CHECK(parse_error(kProto2 + "]a.") == "t.pkl: pickle: stack underflow (opcode APPEND at byte 3)");
  CHECK(parse_error(kProto2 + "K" + op(1) + op(0x86) + ".") ==
        "t.pkl: pickle: stack underflow (opcode TUPLE2 at byte 4)");
  CHECK(parse_error(kProto2 + "](K" + op(1) + op(0x86) + ".") ==
        "t.pkl: pickle: stack underflow (opcode TUPLE2 at byte 6)");
  CHECK(parse_error(kProto2 + "R.") == "t.pkl: pickle: stack underflow (opcode REDUCE at byte 2)");
  // MARK mismatches.
  CHECK(parse_error(kProto2 + "N1.") == "t.pkl: pickle: no MARK to pop (opcode POP_MARK at byte 3)");
  CHECK(parse_error(kProto2 + "]K" + op(1) + "e.") == "t.pkl: pickle: no MARK to pop (opcode APPENDS at byte 5)");
  CHECK(parse_error(kProto2 + "(N.") == "t.pkl: pickle: a MARK is still open (opcode STOP at byte 4)");
  CHECK(parse_error(kProto2 + "}(K" + op(1) + "u.") ==
        "t.pkl: pickle: odd number of items (1) for a dict (opcode SETITEMS at byte 6)");
  CHECK(parse_error(kProto2 + "0N.") == "t.pkl: pickle: no MARK to pop (opcode POP at byte 2)");
  // Wrong targets and arguments.
  CHECK(parse_error(kProto2 + ")K" + op(1) + "a.") ==
        "t.pkl: pickle: target is a tuple, expected a list (opcode APPEND at byte 5)");
  CHECK(parse_error(kProto2 + "}]K" + op(1) + "s.") ==
        "t.pkl: pickle: a dict key of kind list is not supported in a checkpoint (opcode SETITEM at byte 6)");
  CHECK(parse_error("F1.5x\n.") == "t.pkl: pickle: bad float '1.5x' (opcode FLOAT at byte 0)");
  CHECK(parse_error("I99999999999999999999\n.") ==
        "t.pkl: pickle: bad integer '99999999999999999999' (or beyond 64 bits) (opcode INT at byte 0)");
  CHECK(parse_error("Sabc\n.") == "t.pkl: pickle: the STRING argument must be quoted (opcode STRING at byte 0)");
  CHECK(parse_error(kProto2 + unicode("\xC3\x28") + ".") ==
        "t.pkl: pickle: string is not valid UTF-8 (opcode BINUNICODE at byte 2)");
  CHECK(parse_error("V\\ud800\n.") ==
        "t.pkl: pickle: \\u escape is not a Unicode scalar value (opcode UNICODE at byte 0)");
  CHECK(parse_error(kProto2 + op(0x8f) + ".") ==
        "t.pkl: pickle: sets are not supported in a checkpoint (opcode EMPTY_SET at byte 2)");
  CHECK(parse_error(kProto2 + op(0x82) + op(1) + ".") ==
        "t.pkl: pickle: this opcode is not supported in a checkpoint (opcode EXT1 at byte 2)");
}

TEST_CASE("pickle limits nesting depth and open MARKs") {
  // An empty tuple is one level; each TUPLE1 wraps it in one more.
  auto nested_tuples = [](int levels) { return kProto2 + ")" + std::string(levels - 1, '\x85') + "."; };
  ValuePtr deepest = parse(nested_tuples(pickle::kMaxDepth));
  int depth = 1;
  for (const Value* v = deepest.get(); !v->items.empty(); v = v->items[0].get()) ++depth;
  CHECK(depth == pickle::kMaxDepth);
  CHECK(parse_error(nested_tuples(pickle::kMaxDepth + 1)) ==
        "t.pkl: pickle: values nested deeper than 64 levels (opcode TUPLE1 at byte 66)");
  // A long input of nesting opcodes fails at the limit, quickly and without deep recursion.
  CHECK_THROWS_AS(parse(kProto2 + "]" + std::string(1 << 20, '\x85') + "."), Error);
  CHECK_NOTHROW(parse(kProto2 + std::string(pickle::kMaxMarks, '(') + std::string(pickle::kMaxMarks, '1') + "N."));
  CHECK(parse_error(kProto2 + std::string(pickle::kMaxMarks + 1, '(')) ==
        "t.pkl: pickle: more than 64 MARKs open (opcode MARK at byte 66)");
}

TEST_CASE("pickle refuses self-referencing containers, so no cycle can form") {
  CHECK(parse_error(kProto2 + "]q" + op(0) + "h" + op(0) + "a.") ==
        "t.pkl: pickle: cannot modify a list that is already nested in another value (a self-referencing pickle?) "
        "(opcode APPEND at byte 7)");
  // The list is nested in a tuple, then modified through the memo.
  CHECK(parse_error(kProto2 + "]q" + op(0) + op(0x85) + "h" + op(0) + "K" + op(1) + "a0.") ==
        "t.pkl: pickle: cannot modify a list that is already nested in another value (a self-referencing pickle?) "
        "(opcode APPEND at byte 10)");
  CHECK(parse_error(kProto2 + "}q" + op(0) + "K" + op(1) + "h" + op(0) + "s.") ==
        "t.pkl: pickle: cannot modify a dict that is already nested in another value (a self-referencing pickle?) "
        "(opcode SETITEM at byte 9)");
}

TEST_CASE("pickle decodes every integer, float, text and bytes opcode") {
  auto value = [](const std::string& body) { return parse(kProto2 + body + "."); };
  CHECK(value("J" + le(0xFFFFFFFEu, 4))->as_int() == -2);
  CHECK(value("K" + op(200))->as_int() == 200);
  CHECK(value("M" + le(65535, 2))->as_int() == 65535);
  CHECK(value(op(0x8a) + op(0))->as_int() == 0);
  CHECK(value(op(0x8a) + op(2) + le(0xFF7F, 2))->as_int() == -129);
  CHECK(value(op(0x8a) + op(8) + le(0x7FFFFFFFFFFFFFFFull, 8))->as_int() == INT64_MAX);
  CHECK(value(op(0x8a) + op(9) + std::string(9, '\xFF'))->as_int() == -1);  // redundant sign byte still fits
  CHECK(parse_error(kProto2 + op(0x8a) + op(9) + le(0x8000000000000000ull, 8) + op(0) + ".") ==
        "t.pkl: pickle: integer of 9 bytes does not fit in 64 bits (opcode LONG1 at byte 2)");
  CHECK(value(op(0x8b) + le(2, 4) + le(300, 2))->as_int() == 300);
  CHECK(parse("I-42\n.")->as_int() == -42);
  CHECK(parse("L123L\n.")->as_int() == 123);
  CHECK(parse("L-5\n.")->as_int() == -5);
  CHECK(value("G" + std::string("\x3F\xF8\0\0\0\0\0\0", 8))->real == 1.5);
  CHECK(parse("F-0.25\n.")->real == -0.25);
  CHECK(parse("S'a\\x41\\n\\'\\101\\q'\n.")->as_string() == "aA\n'A\\q");
  CHECK(parse("S\"dq\"\n.")->as_string() == "dq");
  CHECK(value("T" + le(3, 4) + "abc")->as_string() == "abc");
  CHECK(value("U" + op(2) + "hi")->as_string() == "hi");
  CHECK(value(op(0x8c) + op(3) + "\xE2\x82\xAC")->as_string() == "\xE2\x82\xAC");
  CHECK(value(op(0x8d) + le(2, 8) + "ok")->as_string() == "ok");
  CHECK(parse("V\\u20ac\xe9\\\\u0041\n.")->as_string() == "\xE2\x82\xAC\xC3\xA9\\\\u0041");
  const ValuePtr b = value("C" + op(3) + std::string("\0\xFF\n", 3));
  CHECK(b->kind == Kind::Bytes);
  CHECK(b->text == std::string("\0\xFF\n", 3));
  CHECK(value("B" + le(1, 4) + "z")->text == "z");
  CHECK(value(op(0x8e) + le(0, 8))->kind == Kind::Bytes);
  CHECK(parse("I01\n.")->boolean == true);
  CHECK(value(op(0x89))->kind == Kind::Bool);
  CHECK(parse("PXYZ\n.")->persistent_id->as_string() == "XYZ");  // the tar layout's string keys
}

TEST_CASE("pickle dicts keep insertion order and replace a repeated key in place, as Python does") {
  std::string body = "}(" + unicode("a") + "K" + op(1) + unicode("b") + "K" + op(2) + unicode("a") + "K" + op(3) +
                     "K" + op(1) + "K" + op(4) + op(0x88) + "K" + op(5) + "u";
  ValuePtr d = parse(kProto2 + body + ".");
  REQUIRE(d->entries.size() == 3);
  CHECK(d->entries[0].first->as_string() == "a");
  CHECK(d->entries[0].second->as_int() == 3);
  CHECK(d->entries[1].first->as_string() == "b");
  CHECK(d->entries[1].second->as_int() == 2);
  CHECK(d->entries[2].first->as_int() == 1);  // True == 1 as a key: the value becomes 5
  CHECK(d->entries[2].second->as_int() == 5);
  // DICT, LIST, TUPLE, DUP, POP and the memo's text forms.
  ValuePtr v = parse("(dp0\nVk\n((lp1\nI1\naI2\na2tp2\ns0g0\n.");
  REQUIRE(v->kind == Kind::Dict);
  const Value& t = *v->entries.at(0).second;
  REQUIRE(t.as_tuple().size() == 2);
  CHECK(t.items[0] == t.items[1]);  // DUP shares the value
  CHECK(t.items[0]->items.size() == 2);
}

TEST_CASE("pickle calls only the allow-listed torch functions, with checked arguments") {
  const std::string storage_pid = "(" + unicode("storage") + "ctorch\nFloatStorage\n" + unicode("0") +
                                  unicode("cpu") + "K" + op(6) + "tQ";
  const std::string v2 = "ctorch._utils\n_rebuild_tensor_v2\n";
  const std::string hooks = "ccollections\nOrderedDict\n)R";
  const std::string shape = "K" + op(2) + "K" + op(3) + op(0x86) + "K" + op(3) + "K" + op(1) + op(0x86);
  ValuePtr t = parse(kProto2 + v2 + "(" + storage_pid + "K" + op(0) + shape + op(0x89) + hooks + "tR.");
  REQUIRE(t->kind == Kind::Tensor);
  CHECK(t->tensor.size == std::vector<int64_t>{2, 3});
  CHECK(t->tensor.stride == std::vector<int64_t>{3, 1});
  // _rebuild_parameter hands back its tensor; _rebuild_tensor takes four arguments.
  ValuePtr p = parse(kProto2 + "ctorch._utils\n_rebuild_parameter\n(" + v2 + "(" + storage_pid + "K" + op(4) +
                     shape + op(0x89) + hooks + "tR" + op(0x88) + hooks + "tR.");
  REQUIRE(p->kind == Kind::Tensor);
  CHECK(p->tensor.storage_offset == 4);
  ValuePtr old = parse(kProto2 + "ctorch._utils\n_rebuild_tensor\n(" + storage_pid + "K" + op(1) + shape + "tR.");
  CHECK(old->tensor.storage_offset == 1);
  // NEWOBJ and BUILD only for an OrderedDict.
  CHECK(parse(kProto2 + "ccollections\nOrderedDict\n)" + op(0x81) + "}b.")->kind == Kind::Dict);
  CHECK(parse_error(kProto2 + "]}b.") ==
        "t.pkl: pickle: BUILD on a list is not allowed in a checkpoint (opcode BUILD at byte 4)");
  CHECK(parse_error(kProto2 + "ctorch\nFloatStorage\n)" + op(0x81) + ".") ==
        "t.pkl: pickle: creating 'torch.FloatStorage' with NEWOBJ is not allowed in a checkpoint (opcode NEWOBJ at "
        "byte 23)");
  // Allow-listed classes are values, not callables.
  CHECK(parse_error(kProto2 + "ctorch\nFloatStorage\n)R.") ==
        "t.pkl: pickle: calling 'torch.FloatStorage' is not allowed in a checkpoint (opcode REDUCE at byte 23)");
  CHECK(parse_error(kProto2 + "N)R.") ==
        "t.pkl: pickle: REDUCE can only call a global, not a none (opcode REDUCE at byte 4)");
  CHECK(parse_error(kProto2 + v2 + "(" + unicode("0") + "K" + op(0) + shape + op(0x89) + "NtR.") ==
        "t.pkl: pickle: torch._utils._rebuild_tensor_v2: storage is a string, not a persistent id (opcode REDUCE "
        "at byte 57)");
  CHECK(parse_error(kProto2 + v2 + "(" + storage_pid + "K" + op(0) + shape + "tR.") ==
        "t.pkl: pickle: torch._utils._rebuild_tensor_v2 takes 6 or 7 arguments, got 4 (opcode REDUCE at byte 100)");
  std::string rank17 = "(";
  for (int i = 0; i < 17; ++i) rank17 += "K" + op(1);
  rank17 += "t";
  CHECK(parse_error(kProto2 + v2 + "(" + storage_pid + "K" + op(0) + rank17 + rank17 + op(0x89) + "NtR.") ==
        "t.pkl: pickle: torch._utils._rebuild_tensor_v2: size has more than 16 dimensions (opcode REDUCE at byte "
        "164)");
  CHECK(parse_error(kProto2 + "ctorch\nload\n") == "t.pkl: pickle global 'torch.load' is not allowed in a checkpoint");
  CHECK(parse_error(kProto2 + "ibuiltins\nexec\n") ==
        "t.pkl: pickle global 'builtins.exec' is not allowed in a checkpoint");
  CHECK(parse_error(kProto2 + unicode("os") + unicode("system") + op(0x93)) ==
        "t.pkl: pickle global 'os.system' is not allowed in a checkpoint");
}

TEST_CASE("pickle reads the 2017 tar layout's Parameter (NEWOBJ, then BUILD) as its persistent data") {
  const std::string parameter = "ctorch.nn.parameter\nParameter\n";
  // What torch 0.1 wrote for {'w': Parameter(tensor 17), 'b': tensor 18}: tensors are persistent string keys.
  ValuePtr root = parse(kProto2 + "ccollections\nOrderedDict\nq" + op(0) + ")Rq" + op(1) + "(" + unicode("w") +
                        parameter + "q" + op(2) + ")" + op(0x81) + "q" + op(3) + "(" + unicode("17") + "QNN" +
                        op(0x88) + op(0x89) + "tb" + unicode("b") + unicode("18") + "Qu.");
  REQUIRE(root->entries.size() == 2);
  const Value& w = entry_value(*root, "w");
  REQUIRE(w.kind == Kind::Persistent);
  CHECK(w.persistent_id->as_string() == "17");
  CHECK(entry_value(*root, "b").persistent_id->as_string() == "18");
  // The class and an instance before its BUILD never escape; the class cannot be called.
  CHECK(parse_error(kProto2 + parameter + ".") ==
        "t.pkl: pickle: 'torch.nn.parameter.Parameter' is only accepted as NEWOBJ's class (opcode STOP at byte 32)");
  CHECK(parse_error(kProto2 + "]" + parameter + ")" + op(0x81) + "a.") ==
        "t.pkl: pickle: a 'torch.nn.parameter.Parameter' is used before BUILD gives it its data (opcode APPEND at "
        "byte 35)");
  CHECK(parse_error(kProto2 + parameter + ")" + op(0x81) + ".") ==
        "t.pkl: pickle: a 'torch.nn.parameter.Parameter' is used before BUILD gives it its data (opcode STOP at "
        "byte 34)");
  CHECK(parse_error(kProto2 + parameter + ")" + op(0x81) + "Nb.") ==
        "t.pkl: pickle: the state of a 'torch.nn.parameter.Parameter' must be (data, grad, hooks, requires_grad, "
        "volatile) with persistent or tensor data (opcode BUILD at byte 35)");
  CHECK(parse_error(kProto2 + parameter + ")R.") ==
        "t.pkl: pickle: calling 'torch.nn.parameter.Parameter' is not allowed in a checkpoint (opcode REDUCE at "
        "byte 33)");
  // The tar layout's tensor records name the tensor class: a value, never called.
  ValuePtr record = parse(kProto2 + "K" + op(5) + "K" + op(6) + "ctorch\nFloatTensor\n" + op(0x87) + ".");
  CHECK(record->as_tuple()[2]->name == "FloatTensor");
  CHECK(parse_error(kProto2 + "ctorch\nFloatTensor\n)R.") ==
        "t.pkl: pickle: calling 'torch.FloatTensor' is not allowed in a checkpoint (opcode REDUCE at byte 22)");
}

TEST_CASE("pickle reads the official 2017 torchvision resnet18 (tar layout) pickle when the shared data is present") {
  std::string dir = test::shared_data_dir();
  std::ifstream in(dir + "/weights/resnet18-5c106cde.head1MiB.pth", std::ios::binary);
  std::ifstream layout_in(dir + "/weights/resnet18_state_dict_layout.tsv");
  if (dir.empty() || !in || !layout_in) {
    MESSAGE("shared data absent: skipped");
    return;
  }
  std::string tar(std::istreambuf_iterator<char>(in), {});
  // The tar members we need: 512-byte headers (name at 0, octal size at 124), contents padded to 512.
  std::string pickled, tensors;
  for (size_t pos = 0; pos + 512 <= tar.size();) {
    std::string name = tar.substr(pos, 100).c_str();
    if (name.empty()) break;
    size_t size = std::stoul(tar.substr(pos + 124, 12), nullptr, 8);
    if (name == "pickle") pickled = tar.substr(pos + 512, size);
    if (name == "tensors") tensors = tar.substr(pos + 512, size);
    pos += 512 + (size + 511) / 512 * 512;
  }
  REQUIRE(!pickled.empty());
  std::vector<std::string> expected_keys;
  for (std::string line; std::getline(layout_in, line);)
    if (!line.empty() && line[0] != '#' && line.find("num_batches_tracked") == std::string::npos)
      expected_keys.push_back(line.substr(0, line.find('\t')));
  REQUIRE(expected_keys.size() == 102);
  ValuePtr root = parse(pickled);
  std::vector<std::string> keys;
  for (const auto& [key, value] : root->entries) {
    keys.push_back(key->as_string());
    REQUIRE(value->kind == Kind::Persistent);
    CHECK(value->persistent_id->kind == Kind::String);  // the tensor's key in member 'tensors'
  }
  CHECK(keys.front() == "conv1.weight");
  // Torch of 2017 put a module's buffers before its parameters (bn1.running_mean before bn1.weight): same names,
  // another order.
  std::sort(keys.begin(), keys.end());
  std::sort(expected_keys.begin(), expected_keys.end());
  CHECK(keys == expected_keys);
  if (tensors.empty()) return;  // past the 1 MiB cut
  size_t consumed = 0;
  CHECK(parse(tensors, 0, &consumed)->as_int() == 102);
  const std::vector<ValuePtr>& header = parse(tensors, consumed)->as_tuple();
  REQUIRE(header.size() == 3);
  CHECK(header[2]->name == "FloatTensor");
}

TEST_CASE("pickle values' checked accessors name both kinds") {
  ValuePtr v = parse(kProto2 + "K" + op(1) + ".");
  CHECK_THROWS_WITH_AS(v->as_string(), "pickle: expected string, got int", Error);
  CHECK_THROWS_WITH_AS(v->as_tuple(), "pickle: expected tuple, got int", Error);
  CHECK_THROWS_WITH_AS(parse(kProto2 + "N.")->as_int(), "pickle: expected int, got none", Error);
  CHECK(std::string(parse(kProto2 + "]." )->kind_name()) == "list");
}
