#include "weights/pickle.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "engine/error.h"
#include "weights/json.h"

namespace tl::pickle {
namespace {

using Kind = Value::Kind;

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

const Node& node_of(const ValuePtr& v) { return static_cast<const Node&>(*v); }

const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";            case '.': return "STOP";            case '0': return "POP";
    case '1': return "POP_MARK";        case '2': return "DUP";             case 'F': return "FLOAT";
    case 'I': return "INT";             case 'J': return "BININT";          case 'K': return "BININT1";
    case 'L': return "LONG";            case 'M': return "BININT2";         case 'N': return "NONE";
    case 'P': return "PERSID";          case 'Q': return "BINPERSID";       case 'R': return "REDUCE";
    case 'S': return "STRING";          case 'T': return "BINSTRING";       case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";         case 'X': return "BINUNICODE";      case 'a': return "APPEND";
    case 'b': return "BUILD";           case 'c': return "GLOBAL";          case 'd': return "DICT";
    case '}': return "EMPTY_DICT";      case 'e': return "APPENDS";         case 'g': return "GET";
    case 'h': return "BINGET";          case 'i': return "INST";            case 'j': return "LONG_BINGET";
    case 'l': return "LIST";            case ']': return "EMPTY_LIST";      case 'o': return "OBJ";
    case 'p': return "PUT";             case 'q': return "BINPUT";          case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";         case 't': return "TUPLE";           case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";        case 'G': return "BINFLOAT";        case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";  case 0x80: return "PROTO";          case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";           case 0x83: return "EXT2";           case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";         case 0x86: return "TUPLE2";         case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";        case 0x89: return "NEWFALSE";       case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";          case 0x8c: return "SHORT_BINUNICODE"; case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";      case 0x8f: return "EMPTY_SET";      case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";      case 0x92: return "NEWOBJ_EX";      case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";        case 0x95: return "FRAME";          case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

constexpr std::string_view kAllowedGlobals[] = {
    "collections.OrderedDict",      "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter", "torch.FloatStorage",           "torch.DoubleStorage",
    "torch.HalfStorage",            "torch.BFloat16Storage",           "torch.LongStorage",
    "torch.IntStorage",             "torch.ShortStorage",              "torch.CharStorage",
    "torch.ByteStorage",            "torch.BoolStorage",
    // The tar layout's 'tensors' member names each tensor's class; like the storages, these are only values.
    "torch.FloatTensor",            "torch.DoubleTensor",              "torch.HalfTensor",
    "torch.BFloat16Tensor",         "torch.LongTensor",                "torch.IntTensor",
    "torch.ShortTensor",            "torch.CharTensor",                "torch.ByteTensor",
    "torch.BoolTensor",
};
constexpr std::string_view kParameterClass = "torch.nn.parameter.Parameter";

// Text from the input as it may appear in a message: printable ASCII kept, other bytes as \xNN, cut at 200.
std::string printable(std::string_view text) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < text.size() && i < 200; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (text.size() > 200) out += "...";
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A whole decimal integer ("-12"), as the text opcodes write it; false when malformed or beyond int64.
bool parse_int64(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& context)
      : data_(data), size_(size), prefix_(context.empty() ? "" : context + ": ") {}

  ValuePtr run(size_t* consumed) {
    while (pos_ < size_) {
      op_pos_ = pos_;
      op_ = data_[pos_++];
      if (op_ == '.') return stop(consumed);
      step();
    }
    throw Error(str(prefix_, "pickle: the data ends at byte ", size_, " before the STOP opcode"));
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    const char* name = opcode_name(op_);
    static const char* hex = "0123456789abcdef";
    std::string op = name ? name : str("0x", hex[op_ >> 4], hex[op_ & 15]);
    throw Error(str(prefix_, "pickle: ", what, " (opcode ", op, " at byte ", op_pos_, ")"));
  }

  // ---- input
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* take(uint64_t n) {
    if (n > remaining()) fail(str("truncated: needs ", n, " argument bytes, only ", remaining(), " left"));
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  uint64_t read_le(int n) {
    const uint8_t* p = take(n);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  std::string_view take_text(uint64_t n) { return {reinterpret_cast<const char*>(take(n)), static_cast<size_t>(n)}; }
  // The argument of a text opcode: the bytes up to the next newline, which is consumed but not returned.
  std::string_view read_line() {
    const void* nl = std::memchr(data_ + pos_, '\n', remaining());
    if (!nl) fail("truncated: no newline ends the argument");
    size_t n = static_cast<const uint8_t*>(nl) - (data_ + pos_);
    std::string_view line = take_text(n);
    ++pos_;
    return line;
  }
  uint64_t read_memo_key_line() {
    std::string_view line = read_line();
    int64_t key;
    if (!parse_int64(line, key) || key < 0) fail(str("bad memo key '", printable(line), "'"));
    return static_cast<uint64_t>(key);
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
  std::vector<NodePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK to pop");
    size_t base = marks_.back();
    marks_.pop_back();
    std::vector<NodePtr> items(std::make_move_iterator(stack_.begin() + base), std::make_move_iterator(stack_.end()));
    stack_.resize(base);
    return items;
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

  // ---- building values
  NodePtr make(Kind kind) {
    if (++values_ > kMaxValues) fail(str("more than ", kMaxValues, " values"));
    auto v = std::make_shared<Node>();
    v->kind = kind;
    return v;
  }
  NodePtr make_int(int64_t i) {
    NodePtr v = make(Kind::Int);
    v->integer = i;
    return v;
  }
  NodePtr make_bool(bool b) {
    NodePtr v = make(Kind::Bool);
    v->boolean = b;
    return v;
  }
  // Strings and bytes are interned, so that equal dict keys are the same node (see KeyId).
  NodePtr make_text(Kind kind, std::string text) {
    if (kind == Kind::String && !json::is_valid_utf8(text)) fail("string is not valid UTF-8");
    auto& table = kind == Kind::String ? strings_ : bytes_;
    auto it = table.find(text);
    if (it != table.end()) return it->second;
    NodePtr v = make(kind);
    v->text = std::move(text);
    table.emplace(std::string_view(v->text), v);  // the view points into the node, which never moves
    return v;
  }
  NodePtr make_int_from_le(const uint8_t* p, uint64_t n) {  // LONG1/LONG4: little-endian two's complement
    if (n == 0) return make_int(0);
    size_t low = static_cast<size_t>(std::min<uint64_t>(n, 8));
    bool negative = p[low - 1] & 0x80;
    for (uint64_t i = 8; i < n; ++i)
      if (p[i] != (negative ? 0xFF : 0x00)) fail(str("integer of ", n, " bytes does not fit in 64 bits"));
    uint64_t v = negative ? ~uint64_t(0) : 0;
    for (size_t i = low; i-- > 0;) v = (v << 8) | p[i];
    return make_int(static_cast<int64_t>(v));
  }

  static void seal(Node& v) {
    v.sealed = true;
    v.key_index.reset();
  }
  void add_height(Node& parent, int child_height) {
    if (child_height + 1 > kMaxDepth) fail(str("values nested deeper than ", kMaxDepth, " levels"));
    parent.height = std::max(parent.height, child_height + 1);
  }
  void require_value(const Node& v) {
    if (v.role == Role::ParameterClass) fail(str("'", kParameterClass, "' is only accepted as NEWOBJ's class"));
    if (v.role == Role::PendingParameter) fail(str("a '", kParameterClass, "' is used before BUILD gives it its data"));
  }
  void nest(Node& parent, Node& child) {
    require_value(child);
    seal(child);
    add_height(parent, child.height);
  }
  void require_mutable(const Node& container) {
    if (container.sealed)
      fail(str("cannot modify a ", container.kind_name(),
               " that is already nested in another value (a self-referencing pickle?)"));
  }
  Node& target(Kind kind) {
    const NodePtr& t = top();
    if (t->kind != kind) fail(str("target is a ", t->kind_name(), ", expected a ", pickle::kind_name(kind)));
    return *t;
  }
  void append(Node& list, NodePtr item) {
    nest(list, *item);  // seals first, so appending a list to itself is caught below
    require_mutable(list);
    list.items.push_back(std::move(item));
  }
  KeyId key_id(const Node& key) {
    switch (key.kind) {
      case Kind::String: return {1, &key, 0};
      case Kind::Bytes: return {2, &key, 0};
      case Kind::Int: return {3, nullptr, key.integer};
      case Kind::Bool: return {3, nullptr, key.boolean ? 1 : 0};
      case Kind::None: return {4, nullptr, 0};
      default: fail(str("a dict key of kind ", key.kind_name(), " is not supported in a checkpoint"));
    }
  }
  void set_item(Node& dict, NodePtr key, NodePtr value) {
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
  void set_items(Node& dict, std::vector<NodePtr>& items) {
    if (items.size() % 2 != 0) fail(str("odd number of items (", items.size(), ") for a dict"));
    for (size_t i = 0; i < items.size(); i += 2) set_item(dict, std::move(items[i]), std::move(items[i + 1]));
  }
  NodePtr make_tuple(std::vector<NodePtr> items) {
    NodePtr t = make(Kind::Tuple);
    t->items.reserve(items.size());
    for (NodePtr& item : items) {
      nest(*t, *item);
      t->items.push_back(std::move(item));
    }
    return t;
  }
  NodePtr make_tuple_from_stack(size_t n) {
    if (available() < n) fail("stack underflow");
    std::vector<NodePtr> items(std::make_move_iterator(stack_.end() - n), std::make_move_iterator(stack_.end()));
    stack_.resize(stack_.size() - n);
    return make_tuple(std::move(items));
  }
  NodePtr make_persistent(NodePtr pid) {
    NodePtr p = make(Kind::Persistent);
    nest(*p, *pid);
    p->persistent_id = std::move(pid);
    return p;
  }

  // ---- globals and calls
  NodePtr make_global(std::string_view module, std::string_view name) {
    std::string qualified = str(module, ".", name);
    bool parameter = qualified == kParameterClass;
    if (!parameter &&
        std::find(std::begin(kAllowedGlobals), std::end(kAllowedGlobals), qualified) == std::end(kAllowedGlobals))
      throw Error(str(prefix_, "pickle global '", printable(qualified), "' is not allowed in a checkpoint"));
    NodePtr g = make(Kind::Global);
    g->module = module;
    g->name = name;
    if (parameter) g->role = Role::ParameterClass;
    return g;
  }
  static std::string qualified_name(const Node& g) { return g.module + "." + g.name; }
  void reduce() {
    NodePtr args = pop();
    NodePtr callable = pop();
    if (callable->kind != Kind::Global) fail(str("REDUCE can only call a global, not a ", callable->kind_name()));
    if (args->kind != Kind::Tuple) fail(str("REDUCE arguments must be a tuple, not a ", args->kind_name()));
    std::string callee = qualified_name(*callable);
    if (callee == "collections.OrderedDict") {
      if (!args->items.empty()) fail(str("collections.OrderedDict called with ", args->items.size(), " arguments"));
      push(make(Kind::Dict));
    } else if (callee == "torch._utils._rebuild_tensor_v2") {
      push(rebuild_tensor(*args, callee, 6, 7));
    } else if (callee == "torch._utils._rebuild_tensor") {
      push(rebuild_tensor(*args, callee, 4, 4));
    } else if (callee == "torch._utils._rebuild_parameter") {
      if (args->items.size() != 3) fail(str(callee, " takes 3 arguments, got ", args->items.size()));
      const ValuePtr& tensor = args->items[0];
      if (tensor->kind != Kind::Tensor) fail(str(callee, ": argument 1 is a ", tensor->kind_name(), ", not a tensor"));
      push(std::const_pointer_cast<Node>(std::static_pointer_cast<const Node>(tensor)));
    } else {
      fail(str("calling '", callee, "' is not allowed in a checkpoint"));
    }
  }
  std::vector<int64_t> int_tuple(const std::string& callee, const ValuePtr& v, const char* what) {
    if (v->kind != Kind::Tuple) fail(str(callee, ": ", what, " is a ", v->kind_name(), ", not a tuple"));
    // Each tensor copies these, and the memo can hand the same tuple to many tensors: bound the copy.
    if (v->items.size() > kMaxRank) fail(str(callee, ": ", what, " has more than ", kMaxRank, " dimensions"));
    std::vector<int64_t> out;
    for (const ValuePtr& item : v->items) {
      if (item->kind != Kind::Int || item->integer < 0)
        fail(str(callee, ": ", what, " must hold non-negative ints"));
      out.push_back(item->integer);
    }
    return out;
  }
  NodePtr rebuild_tensor(const Node& args, const std::string& callee, size_t min_args, size_t max_args) {
    const std::vector<ValuePtr>& a = args.items;
    if (a.size() < min_args || a.size() > max_args)
      fail(str(callee, " takes ", min_args, min_args == max_args ? "" : str(" or ", max_args), " arguments, got ",
               a.size()));
    if (a[0]->kind != Kind::Persistent)
      fail(str(callee, ": storage is a ", a[0]->kind_name(), ", not a persistent id"));
    if (a[1]->kind != Kind::Int || a[1]->integer < 0) fail(str(callee, ": storage offset must be a non-negative int"));
    NodePtr t = make(Kind::Tensor);
    t->tensor.storage = a[0];
    t->tensor.storage_offset = a[1]->integer;
    t->tensor.size = int_tuple(callee, a[2], "size");
    t->tensor.stride = int_tuple(callee, a[3], "stride");
    if (t->tensor.size.size() != t->tensor.stride.size())
      fail(str(callee, ": size has ", t->tensor.size.size(), " dimensions, stride ", t->tensor.stride.size()));
    if (a.size() > 4 && a[4]->kind != Kind::Bool) fail(str(callee, ": requires_grad is a ", a[4]->kind_name()));
    add_height(*t, node_of(a[0]).height);
    return t;
  }
  void newobj() {
    NodePtr args = pop();
    NodePtr cls = pop();
    if (cls->kind != Kind::Global) fail(str("NEWOBJ needs a class, not a ", cls->kind_name()));
    std::string callee = qualified_name(*cls);
    bool no_args = args->kind == Kind::Tuple && args->items.empty();
    if (cls->role == Role::ParameterClass && no_args) {
      NodePtr p = make(Kind::None);  // becomes its data at BUILD
      p->role = Role::PendingParameter;
      push(p);
      return;
    }
    if (callee != "collections.OrderedDict" || !no_args)
      fail(str("creating '", callee, "' with NEWOBJ is not allowed in a checkpoint"));
    push(make(Kind::Dict));
  }
  // BUILD of a Parameter from the 2017 tar layout: the Parameter becomes its data (a persistent tensor key), as
  // torch's Variable.__setstate__ takes state[0] as the data and ignores the grad, hooks and flags.
  void build_parameter(Node& parameter, const Node& state) {
    if (state.kind != Kind::Tuple || state.items.size() != 5 ||
        (state.items[0]->kind != Kind::Persistent && state.items[0]->kind != Kind::Tensor))
      fail(str("the state of a '", kParameterClass,
               "' must be (data, grad, hooks, requires_grad, volatile) with persistent or tensor data"));
    const Node& data = node_of(state.items[0]);
    parameter.kind = data.kind;
    parameter.persistent_id = data.persistent_id;
    parameter.tensor = data.tensor;
    parameter.height = data.height;
    parameter.role = Role::Value;
  }

  // ---- text arguments of protocol 0
  // Python's codecs.escape_decode, which STRING arguments go through.
  std::string escape_decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\') {
        out += s[i];
        continue;
      }
      if (++i == s.size()) fail("STRING argument ends with a lone backslash");
      char e = s[i];
      switch (e) {
        case '\n': break;
        case '\\': case '\'': case '"': out += e; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': {
          int hi = s.size() - i >= 3 ? hex_digit(s[i + 1]) : -1;  // exactly two hex digits, as Python wants
          int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
          if (lo < 0) fail("invalid \\x escape in a STRING argument");
          out += static_cast<char>(hi * 16 + lo);
          i += 2;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            int v = e - '0';
            for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) v = v * 8 + (s[++i] - '0');
            out += static_cast<char>(v & 0xFF);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    return out;
  }
  // Python's raw-unicode-escape codec, which UNICODE arguments go through: bytes are Latin-1 code points, except
  // \uXXXX and \UXXXXXXXX after an odd number of backslashes.
  std::string raw_unicode_escape_decode(std::string_view s) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      if (s[i] != '\\') {
        append_utf8(out, static_cast<unsigned char>(s[i++]));
        continue;
      }
      size_t start = i;
      while (i < s.size() && s[i] == '\\') ++i;
      size_t backslashes = i - start;
      if (backslashes % 2 == 0 || i == s.size() || (s[i] != 'u' && s[i] != 'U')) {
        out.append(backslashes, '\\');
        continue;
      }
      out.append(backslashes - 1, '\\');
      size_t digits = s[i] == 'u' ? 4 : 8;
      ++i;
      if (s.size() - i < digits) fail("truncated \\u escape in a UNICODE argument");
      uint32_t cp = 0;
      for (size_t k = 0; k < digits; ++k) {
        int d = hex_digit(s[i + k]);
        if (d < 0) fail("invalid \\u escape in a UNICODE argument");
        cp = cp * 16 + static_cast<uint32_t>(d);
      }
      i += digits;
      if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("\\u escape is not a Unicode scalar value");
      append_utf8(out, cp);
    }
    return out;
  }
  NodePtr text_int(std::string_view line) {
    int64_t v;
    if (!parse_int64(line, v)) fail(str("bad integer '", printable(line), "' (or beyond 64 bits)"));
    return make_int(v);
  }

  void step();
  ValuePtr stop(size_t* consumed) {
    if (!marks_.empty()) fail("a MARK is still open");
    if (stack_.size() != 1) fail(str(stack_.size(), " values on the stack, expected 1"));
    NodePtr result = std::move(stack_.back());
    stack_.clear();
    require_value(*result);
    seal(*result);
    if (consumed) *consumed = pos_;
    return result;
  }

  const uint8_t* data_;
  size_t size_;
  std::string prefix_;
  size_t pos_ = 0, op_pos_ = 0;
  uint8_t op_ = 0;
  size_t values_ = 0;
  std::vector<NodePtr> stack_;
  std::vector<size_t> marks_;  // stack sizes at each open MARK
  std::unordered_map<uint64_t, NodePtr> memo_;
  std::unordered_map<std::string_view, NodePtr> strings_, bytes_;
};

void Unpickler::step() {
  switch (op_) {
    case 0x80: {  // PROTO
      uint8_t version = *take(1);
      if (version > 5) fail(str("unsupported protocol ", int(version)));
      return;
    }
    case 0x95: {  // FRAME: only batches reads; its content is ordinary opcodes
      uint64_t n = read_le(8);
      if (n > remaining()) fail(str("truncated: frame of ", n, " bytes, only ", remaining(), " left"));
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
      std::string_view module = read_line();
      push(make_global(module, read_line()));
      return;
    }
    case 0x93: {  // STACK_GLOBAL
      NodePtr name = pop();
      NodePtr module = pop();
      if (module->kind != Kind::String || name->kind != Kind::String) fail("module and name must be strings");
      push(make_global(module->text, name->text));
      return;
    }
    case 'i': {  // INST: reject the class by name when it is not allowed, and the opcode in any case
      std::string_view module = read_line();
      make_global(module, read_line());
      fail("this opcode is not supported in a checkpoint");
    }
    case 'R': reduce(); return;
    case 0x81: newobj(); return;
    case 'b': {  // BUILD: an OrderedDict's state (its _metadata attribute); ignored
      NodePtr state = pop();
      const NodePtr& t = top();
      if (t->role == Role::PendingParameter) return build_parameter(*t, *state);
      if (t->kind != Kind::Dict)
        fail(str("BUILD on a ", t->kind_name(), " is not allowed in a checkpoint"));
      return;
    }
    case 'P': {  // PERSID
      std::string_view line = read_line();
      for (char c : line)
        if (static_cast<unsigned char>(c) >= 0x80) fail("protocol 0 persistent ids must be ASCII");
      push(make_persistent(make_text(Kind::String, std::string(line))));
      return;
    }
    case 'Q': push(make_persistent(pop())); return;  // BINPERSID
    case 'p': memo_put(read_memo_key_line()); return;
    case 'q': memo_put(read_le(1)); return;
    case 'r': memo_put(read_le(4)); return;
    case 0x94: memo_put(memo_.size()); return;  // MEMOIZE
    case 'g': push(memo_get(read_memo_key_line())); return;
    case 'h': push(memo_get(read_le(1))); return;
    case 'j': push(memo_get(read_le(4))); return;
    case 'N': push(make(Kind::None)); return;
    case 0x88: push(make_bool(true)); return;
    case 0x89: push(make_bool(false)); return;
    case 'I': {  // INT; "00" and "01" are protocol 0's False and True
      std::string_view line = read_line();
      if (line == "00" || line == "01")
        push(make_bool(line == "01"));
      else
        push(text_int(line));
      return;
    }
    case 'J': push(make_int(static_cast<int32_t>(static_cast<uint32_t>(read_le(4))))); return;  // BININT
    case 'K': push(make_int(static_cast<int64_t>(read_le(1)))); return;
    case 'M': push(make_int(static_cast<int64_t>(read_le(2)))); return;
    case 'L': {  // LONG: decimal with an optional Python 2 'L' suffix
      std::string_view line = read_line();
      if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
      push(text_int(line));
      return;
    }
    case 0x8a: {  // LONG1
      uint64_t n = read_le(1);
      push(make_int_from_le(take(n), n));
      return;
    }
    case 0x8b: {  // LONG4
      uint64_t n = read_le(4);
      push(make_int_from_le(take(n), n));
      return;
    }
    case 'F': {  // FLOAT: Python's repr of the value
      std::string_view line = read_line();
      NodePtr v = make(Kind::Float);
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), v->real);
      if (line.empty() || ec != std::errc() || end != line.data() + line.size())
        fail(str("bad float '", printable(line), "'"));
      push(v);
      return;
    }
    case 'G': {  // BINFLOAT: big-endian IEEE 754 double
      const uint8_t* p = take(8);
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
      NodePtr v = make(Kind::Float);
      std::memcpy(&v->real, &bits, sizeof bits);
      push(v);
      return;
    }
    case 'S': {  // STRING: a quoted Python 2 str literal
      std::string_view line = read_line();
      if (line.size() < 2 || line.front() != line.back() || (line.front() != '\'' && line.front() != '"'))
        fail("the STRING argument must be quoted");
      push(make_text(Kind::String, escape_decode(line.substr(1, line.size() - 2))));
      return;
    }
    case 'T': {  // BINSTRING: signed 32-bit length
      auto n = static_cast<int32_t>(static_cast<uint32_t>(read_le(4)));
      if (n < 0) fail(str("negative length ", n));
      push(make_text(Kind::String, std::string(take_text(static_cast<uint64_t>(n)))));
      return;
    }
    case 'U': push(make_text(Kind::String, std::string(take_text(read_le(1))))); return;
    case 'V': push(make_text(Kind::String, raw_unicode_escape_decode(read_line()))); return;
    case 'X': push(make_text(Kind::String, std::string(take_text(read_le(4))))); return;
    case 0x8c: push(make_text(Kind::String, std::string(take_text(read_le(1))))); return;
    case 0x8d: push(make_text(Kind::String, std::string(take_text(read_le(8))))); return;
    case 'B': push(make_text(Kind::Bytes, std::string(take_text(read_le(4))))); return;
    case 'C': push(make_text(Kind::Bytes, std::string(take_text(read_le(1))))); return;
    case 0x8e: push(make_text(Kind::Bytes, std::string(take_text(read_le(8))))); return;
    case '}': push(make(Kind::Dict)); return;  // EMPTY_DICT
    case 'd': {                                // DICT
      std::vector<NodePtr> items = pop_mark();
      NodePtr d = make(Kind::Dict);
      set_items(*d, items);
      push(d);
      return;
    }
    case 's': {  // SETITEM
      NodePtr value = pop();
      NodePtr key = pop();
      set_item(target(Kind::Dict), std::move(key), std::move(value));
      return;
    }
    case 'u': {  // SETITEMS
      std::vector<NodePtr> items = pop_mark();
      set_items(target(Kind::Dict), items);
      return;
    }
    case ']': push(make(Kind::List)); return;  // EMPTY_LIST
    case 'l': {                                // LIST
      std::vector<NodePtr> items = pop_mark();
      NodePtr l = make(Kind::List);
      for (NodePtr& item : items) append(*l, std::move(item));
      push(l);
      return;
    }
    case 'a': {  // APPEND
      NodePtr item = pop();
      append(target(Kind::List), std::move(item));
      return;
    }
    case 'e': {  // APPENDS
      std::vector<NodePtr> items = pop_mark();
      Node& list = target(Kind::List);
      for (NodePtr& item : items) append(list, std::move(item));
      return;
    }
    case ')': push(make_tuple({})); return;  // EMPTY_TUPLE
    case 't': push(make_tuple(pop_mark())); return;
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
