// The opcode machine of the restricted unpickler: the stack with its MARKs, the memo, and the loop over opcodes.
// It reads through Input (pickle_input.h) and creates values through the Builder (pickle_builder.h); the allowed
// globals and what REDUCE, NEWOBJ and BUILD do with them are in pickle_globals.cpp; protocol 0's text decoding is
// in pickle_text.cpp.
#include "weights/pickle.h"

#include <charconv>
#include <cstring>
#include <iterator>
#include <string_view>
#include <unordered_map>

#include "engine/error.h"
#include "weights/pickle_builder.h"
#include "weights/pickle_globals.h"
#include "weights/pickle_input.h"
#include "weights/pickle_text.h"

namespace tl::pickle {
namespace {

using namespace detail;

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& context)
      : at_{context.empty() ? "" : context + ": "}, in_(data, size, at_), values_(at_) {}

  ValuePtr run(size_t* consumed) {
    while (in_.remaining() > 0) {
      at_.op_pos = in_.pos();
      at_.op = in_.next_byte();
      if (at_.op == '.') return stop(consumed);
      step();
    }
    throw Error(str(at_.prefix, "pickle: the data ends at byte ", in_.size(), " before the STOP opcode"));
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { at_.fail(what); }

  // ---- text arguments
  NodePtr text_int(std::string_view line) {
    int64_t v;
    if (!parse_int64(line, v)) fail(str("bad integer '", printable(line), "' (or beyond 64 bits)"));
    return values_.make_int(v);
  }
  // A text argument through one of pickle_text.h's decoders; what it finds wrong is this opcode's error.
  std::string decode(const char* (*decoder)(std::string_view, std::string&), std::string_view argument) {
    std::string out;
    if (const char* error = decoder(argument, out)) fail(error);
    return out;
  }

  // ---- the stack, its MARKs and the memo
  size_t available() const { return stack_.size() - (marks_.empty() ? 0 : marks_.back()); }
  void push(NodePtr v) {
    if (stack_.size() >= kMaxStack) fail(str("more than ", kMaxStack, " values on the stack"));
    stack_.push_back(std::move(v));
  }
  NodePtr pop() {
    if (available() == 0) fail("stack underflow");
    NodePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const NodePtr& top() {
    if (available() == 0) fail("stack underflow");
    return stack_.back();
  }
  Node& target(Kind kind) {
    const NodePtr& t = top();
    if (t->kind != kind) fail(str("target is a ", t->kind_name(), ", expected a ", pickle::kind_name(kind)));
    return *t;
  }
  std::vector<NodePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop");
    size_t base = marks_.back();
    marks_.pop_back();
    std::vector<NodePtr> items(std::make_move_iterator(stack_.begin() + base), std::make_move_iterator(stack_.end()));
    stack_.resize(base);
    return items;
  }
  NodePtr make_tuple_from_stack(size_t n) {
    if (available() < n) fail("stack underflow");
    std::vector<NodePtr> items(std::make_move_iterator(stack_.end() - n), std::make_move_iterator(stack_.end()));
    stack_.resize(stack_.size() - n);
    return values_.make_tuple(std::move(items));
  }
  void memo_put(uint64_t key) {
    const NodePtr& v = top();
    if (memo_.size() >= kMaxMemo && !memo_.count(key)) fail(str("more than ", kMaxMemo, " memo entries"));
    memo_[key] = v;
  }
  NodePtr memo_get(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail(str("memo key ", key, " is missing"));
    return it->second;
  }

  void step();
  ValuePtr stop(size_t* consumed) {
    if (!marks_.empty()) fail("a MARK is still open");
    if (stack_.size() != 1) fail(str(stack_.size(), " values on the stack, expected 1"));
    NodePtr result = std::move(stack_.back());
    stack_.clear();
    values_.require_value(*result);
    Builder::seal(*result);
    if (consumed) *consumed = in_.pos();
    return result;
  }

  Position at_;  // the opcode being run, for errors; in_ and values_ refer to it
  Input in_;
  Builder values_;
  std::vector<NodePtr> stack_;
  std::vector<size_t> marks_;  // stack sizes at each open MARK
  std::unordered_map<uint64_t, NodePtr> memo_;
};

void Unpickler::step() {
  switch (at_.op) {
    case 0x80: {  // PROTO
      uint8_t version = *in_.take(1);
      if (version > 5) fail(str("unsupported protocol ", int(version)));
      return;
    }
    case 0x95: {  // FRAME: only batches reads; its content is ordinary opcodes
      uint64_t n = in_.read_le(8);
      if (n > in_.remaining()) fail(str("truncated: frame of ", n, " bytes, only ", in_.remaining(), " left"));
      return;
    }
    case '(':  // MARK
      if (marks_.size() >= kMaxMarks) fail(str("more than ", kMaxMarks, " MARKs open"));
      marks_.push_back(stack_.size());
      return;
    case '0':  // POP: the top value, or the MARK when nothing is above it (as Python does)
      if (available() > 0)
        stack_.pop_back();
      else
        pop_mark();
      return;
    case '1': pop_mark(); return;   // POP_MARK
    case '2': push(top()); return;  // DUP
    case 'c': {                     // GLOBAL
      std::string_view module = in_.read_line();
      push(make_global(values_, module, in_.read_line()));
      return;
    }
    case 0x93: {  // STACK_GLOBAL
      NodePtr name = pop();
      NodePtr module = pop();
      if (module->kind != Kind::String || name->kind != Kind::String) fail("module and name must be strings");
      push(make_global(values_, module->text, name->text));
      return;
    }
    case 'i': {  // INST: reject the class by name when it is not allowed, and the opcode in any case
      std::string_view module = in_.read_line();
      make_global(values_, module, in_.read_line());
      fail("this opcode is not supported in a checkpoint");
    }
    case 'R': {  // REDUCE
      NodePtr args = pop();
      NodePtr callable = pop();
      push(reduce(values_, *callable, *args));
      return;
    }
    case 0x81: {  // NEWOBJ
      NodePtr args = pop();
      NodePtr cls = pop();
      push(newobj(values_, *cls, *args));
      return;
    }
    case 'b': {  // BUILD: a pending Parameter's data, or an OrderedDict's state (its _metadata attribute)
      NodePtr state = pop();
      build(values_, *top(), *state);
      return;
    }
    case 'P': {  // PERSID
      std::string_view line = in_.read_line();
      for (char c : line)
        if (static_cast<unsigned char>(c) >= 0x80) fail("protocol 0 persistent ids must be ASCII");
      push(values_.make_persistent(values_.make_text(Kind::String, std::string(line))));
      return;
    }
    case 'Q': push(values_.make_persistent(pop())); return;  // BINPERSID
    case 'p': memo_put(in_.read_memo_key_line()); return;
    case 'q': memo_put(in_.read_le(1)); return;
    case 'r': memo_put(in_.read_le(4)); return;
    case 0x94: memo_put(memo_.size()); return;  // MEMOIZE
    case 'g': push(memo_get(in_.read_memo_key_line())); return;
    case 'h': push(memo_get(in_.read_le(1))); return;
    case 'j': push(memo_get(in_.read_le(4))); return;
    case 'N': push(values_.make(Kind::None)); return;
    case 0x88: push(values_.make_bool(true)); return;
    case 0x89: push(values_.make_bool(false)); return;
    case 'I': {  // INT; "00" and "01" are protocol 0's False and True
      std::string_view line = in_.read_line();
      if (line == "00" || line == "01")
        push(values_.make_bool(line == "01"));
      else
        push(text_int(line));
      return;
    }
    case 'J': push(values_.make_int(static_cast<int32_t>(static_cast<uint32_t>(in_.read_le(4))))); return;  // BININT
    case 'K': push(values_.make_int(static_cast<int64_t>(in_.read_le(1)))); return;
    case 'M': push(values_.make_int(static_cast<int64_t>(in_.read_le(2)))); return;
    case 'L': {  // LONG: decimal with an optional Python 2 'L' suffix
      std::string_view line = in_.read_line();
      if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
      push(text_int(line));
      return;
    }
    case 0x8a: {  // LONG1
      uint64_t n = in_.read_le(1);
      push(values_.make_int_from_le(in_.take(n), n));
      return;
    }
    case 0x8b: {  // LONG4
      uint64_t n = in_.read_le(4);
      push(values_.make_int_from_le(in_.take(n), n));
      return;
    }
    case 'F': {  // FLOAT: Python's repr of the value
      std::string_view line = in_.read_line();
      NodePtr v = values_.make(Kind::Float);
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v->real);
      if (line.empty() || ec != std::errc() || end != line.data() + line.size())
        fail(str("bad float '", printable(line), "'"));
      push(v);
      return;
    }
    case 'G': {  // BINFLOAT: big-endian IEEE 754 double
      const uint8_t* p = in_.take(8);
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
      NodePtr v = values_.make(Kind::Float);
      std::memcpy(&v->real, &bits, sizeof bits);
      push(v);
      return;
    }
    case 'S': {  // STRING: a quoted Python 2 str literal
      std::string_view line = in_.read_line();
      if (line.size() < 2 || line.front() != line.back() || (line.front() != '\'' && line.front() != '"'))
        fail("the STRING argument must be quoted");
      push(values_.make_text(Kind::String, decode(escape_decode, line.substr(1, line.size() - 2))));
      return;
    }
    case 'T': {  // BINSTRING: signed 32-bit length
      auto n = static_cast<int32_t>(static_cast<uint32_t>(in_.read_le(4)));
      if (n < 0) fail(str("negative length ", n));
      push(values_.make_text(Kind::String, std::string(in_.take_text(static_cast<uint64_t>(n)))));
      return;
    }
    case 'U': push(values_.make_text(Kind::String, std::string(in_.take_text(in_.read_le(1))))); return;
    case 'V': push(values_.make_text(Kind::String, decode(raw_unicode_escape_decode, in_.read_line()))); return;
    case 'X': push(values_.make_text(Kind::String, std::string(in_.take_text(in_.read_le(4))))); return;
    case 0x8c: push(values_.make_text(Kind::String, std::string(in_.take_text(in_.read_le(1))))); return;
    case 0x8d: push(values_.make_text(Kind::String, std::string(in_.take_text(in_.read_le(8))))); return;
    case 'B': push(values_.make_text(Kind::Bytes, std::string(in_.take_text(in_.read_le(4))))); return;
    case 'C': push(values_.make_text(Kind::Bytes, std::string(in_.take_text(in_.read_le(1))))); return;
    case 0x8e: push(values_.make_text(Kind::Bytes, std::string(in_.take_text(in_.read_le(8))))); return;
    case '}': push(values_.make(Kind::Dict)); return;  // EMPTY_DICT
    case 'd': {                                        // DICT
      std::vector<NodePtr> items = pop_mark();
      NodePtr d = values_.make(Kind::Dict);
      values_.set_items(*d, items);
      push(d);
      return;
    }
    case 's': {  // SETITEM
      NodePtr value = pop();
      NodePtr key = pop();
      values_.set_item(target(Kind::Dict), std::move(key), std::move(value));
      return;
    }
    case 'u': {  // SETITEMS
      std::vector<NodePtr> items = pop_mark();
      values_.set_items(target(Kind::Dict), items);
      return;
    }
    case ']': push(values_.make(Kind::List)); return;  // EMPTY_LIST
    case 'l': {                                        // LIST
      std::vector<NodePtr> items = pop_mark();
      NodePtr l = values_.make(Kind::List);
      for (NodePtr& item : items) values_.append(*l, std::move(item));
      push(l);
      return;
    }
    case 'a': {  // APPEND
      NodePtr item = pop();
      values_.append(target(Kind::List), std::move(item));
      return;
    }
    case 'e': {  // APPENDS
      std::vector<NodePtr> items = pop_mark();
      Node& list = target(Kind::List);
      for (NodePtr& item : items) values_.append(list, std::move(item));
      return;
    }
    case ')': push(values_.make_tuple({})); return;  // EMPTY_TUPLE
    case 't': push(values_.make_tuple(pop_mark())); return;
    case 0x85: push(make_tuple_from_stack(1)); return;
    case 0x86: push(make_tuple_from_stack(2)); return;
    case 0x87: push(make_tuple_from_stack(3)); return;
    case 0x8f: case 0x90: case 0x91:
      fail("sets are not supported in a checkpoint");
    case 'o': case 0x82: case 0x83: case 0x84: case 0x92: case 0x96: case 0x97: case 0x98:
      fail("this opcode is not supported in a checkpoint");
    default:
      fail("unknown opcode");
  }
}

}  // namespace

ValuePtr unpickle(const uint8_t* data, size_t size, const std::string& context, size_t* consumed) {
  if (!data && size > 0) throw Error(str(context, ": pickle: no data"));
  return Unpickler(data ? data : reinterpret_cast<const uint8_t*>(""), size, context).run(consumed);
}

}  // namespace tl::pickle
