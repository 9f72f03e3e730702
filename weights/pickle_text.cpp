#include "weights/pickle_text.h"

#include <charconv>

#include "weights/json.h"

namespace tl::pickle::detail {
namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

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

bool parse_int64(std::string_view s, int64_t& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

const char* escape_decode(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) return "STRING argument ends with a lone backslash";
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
        if (lo < 0) return "invalid \\x escape in a STRING argument";
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
  return nullptr;
}

const char* raw_unicode_escape_decode(std::string_view s, std::string& out) {
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '\\') {
      json::append_utf8(out, static_cast<unsigned char>(s[i++]));
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
    if (s.size() - i < digits) return "truncated \\u escape in a UNICODE argument";
    uint32_t cp = 0;
    for (size_t k = 0; k < digits; ++k) {
      int d = hex_digit(s[i + k]);
      if (d < 0) return "invalid \\u escape in a UNICODE argument";
      cp = cp * 16 + static_cast<uint32_t>(d);
    }
    i += digits;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return "\\u escape is not a Unicode scalar value";
    json::append_utf8(out, cp);
  }
  return nullptr;
}

}  // namespace tl::pickle::detail
