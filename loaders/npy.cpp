#include "loaders/npy.h"

#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>

#include "engine/error.h"
#include "weights/binary_file.h"

namespace tl {

// '<f4' is written and read as raw memory, which is little-endian only on such hosts.
static_assert(std::endian::native == std::endian::little, "npy I/O assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes before the version
constexpr size_t kAlignment = 64;       // the NEP asks for 64 so the data can be memory-mapped aligned

template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(str(path, ": ", args...));
}

// Python's repr of a shape tuple: "()", "(5,)", "(2, 3)".
std::string shape_tuple(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += str(i ? ", " : "", shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// A cursor over the header's dict literal. The grammar is the subset numpy writes: quoted string keys;
// values that are quoted strings, True/False, or tuples of non-negative integers.
struct DictParser {
  const std::string& path;
  const std::string& text;
  size_t pos = 0;

  [[noreturn]] void error(const std::string& what) const {
    fail(path, "malformed .npy header (", what, " at character ", pos, "): ", text);
  }
  void skip_spaces() {
    while (pos < text.size() && text[pos] == ' ') ++pos;
  }
  bool eat(char c) {
    skip_spaces();
    if (pos < text.size() && text[pos] == c) return ++pos, true;
    return false;
  }
  std::string quoted() {
    skip_spaces();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"')) error("expected a quoted string");
    char q = text[pos++];
    size_t end = text.find(q, pos);
    if (end == std::string::npos) error("unterminated string");
    std::string s = text.substr(pos, end - pos);
    pos = end + 1;
    return s;
  }
  bool word(const char* w) {
    skip_spaces();
    size_t n = std::strlen(w);
    if (text.compare(pos, n, w) == 0) return pos += n, true;
    return false;
  }
  Shape tuple() {
    if (!eat('(')) error("expected a tuple");
    Shape shape;
    while (!eat(')')) {
      skip_spaces();
      if (pos >= text.size() || text[pos] < '0' || text[pos] > '9') error("expected a dimension");
      int64_t d = 0;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        if (d > (std::numeric_limits<int64_t>::max() - 9) / 10) error("dimension overflows");
        d = d * 10 + (text[pos++] - '0');
      }
      shape.push_back(d);
      if (!eat(',')) {
        if (!eat(')')) error("expected ',' or ')'");
        break;
      }
    }
    return shape;
  }
};

}  // namespace

std::string npy_header(const Shape& shape) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_tuple(shape) + ", }";
  // magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of the alignment.
  size_t unpadded = 10 + dict.size() + 1;
  dict.append((kAlignment - unpadded % kAlignment) % kAlignment, ' ');
  dict += '\n';
  TL_CHECK(dict.size() <= 0xffff, "npy header for shape ", shape_str(shape), " does not fit version 1.0");
  std::string header(kMagic, 6);
  header += '\x01';
  header += '\x00';
  header += static_cast<char>(dict.size() & 0xff);
  header += static_cast<char>(dict.size() >> 8);
  return header + dict;
}

void write_npy(const std::string& path, const Tensor& tensor) {
  TL_CHECK(tensor.defined(), path, ": cannot write an undefined tensor as .npy");
  TL_CHECK(tensor.device() == Device::CPU, path, ": tensor ", tensor.describe(), " must be on the CPU to write .npy");
  TL_CHECK(tensor.dtype() == DType::F32 || tensor.dtype() == DType::F64, path, ": tensor ", tensor.describe(),
           " is not floating point; .npy export writes '<f4'");
  Tensor f32 = tensor.dtype() == DType::F32 ? tensor : tensor.to_dtype(DType::F32);
  std::string header = npy_header(f32.shape());

  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, "cannot create ", tmp, ": ", std::strerror(errno));
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    if (f32.nbytes()) out.write(static_cast<const char*>(f32.raw()), static_cast<std::streamsize>(f32.nbytes()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      fail(path, "cannot write ", tmp, " (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    fail(path, "cannot rename ", tmp, " over it: ", std::strerror(err));
  }
}

Tensor read_npy(const std::string& path) {
  auto file = BinaryFile::open(path);
  unsigned char pre[12] = {};
  if (file->size() < 10) fail(path, "too short for a .npy file (", file->size(), " bytes)");
  file->read(0, pre, 10, ".npy preamble");
  if (std::memcmp(pre, kMagic, 6) != 0) fail(path, "not a .npy file (bad magic)");
  int major = pre[6], minor = pre[7];
  uint64_t header_len = 0, header_start = 0;
  if (major == 1 && minor == 0) {
    header_len = le16(pre + 8);
    header_start = 10;
  } else if (major == 2 && minor == 0) {
    file->read(0, pre, 12, ".npy preamble");
    header_len = le32(pre + 8);
    header_start = 12;
  } else {
    fail(path, "unsupported .npy version ", major, ".", minor, " (tl reads 1.0 and 2.0)");
  }
  std::string text = file->read_string(header_start, header_len, ".npy header");
  if (text.empty() || text.back() != '\n') fail(path, "malformed .npy header (no terminating newline)");
  text.pop_back();

  DictParser p{path, text};
  std::map<std::string, int> seen;
  std::string descr;
  bool fortran = false;
  Shape shape;
  if (!p.eat('{')) p.error("expected '{'");
  while (!p.eat('}')) {
    std::string key = p.quoted();
    if (seen[key]++) p.error("duplicate key '" + key + "'");
    if (!p.eat(':')) p.error("expected ':'");
    if (key == "descr") {
      descr = p.quoted();
    } else if (key == "fortran_order") {
      if (p.word("True")) fortran = true;
      else if (!p.word("False")) p.error("fortran_order is not True or False");
    } else if (key == "shape") {
      shape = p.tuple();
    } else {
      p.error("unexpected key '" + key + "'");
    }
    if (!p.eat(',')) {
      if (!p.eat('}')) p.error("expected ',' or '}'");
      break;
    }
  }
  p.skip_spaces();
  if (p.pos != text.size()) p.error("trailing characters after the dict");
  if (seen.size() != 3) p.error("expected exactly the keys descr, fortran_order and shape");
  if (descr != "<f4") fail(path, "dtype '", descr, "' is not supported (tl reads '<f4')");
  if (fortran) fail(path, "Fortran-order arrays are not supported (tl reads C order)");

  uint64_t data_start = header_start + header_len;
  uint64_t data_bytes = file->size() - data_start;  // header_start + header_len <= size: read_string checked it
  // Bound the product by what the file holds, so a hostile shape can neither overflow nor allocate.
  bool empty = false;
  for (int64_t d : shape) empty = empty || d == 0;
  uint64_t numel = empty ? 0 : 1;
  for (int64_t d : shape) {
    if (empty) break;
    if (numel > data_bytes / 4 / static_cast<uint64_t>(d))
      fail(path, "shape ", shape_str(shape), " needs more data than the file's ", data_bytes, " data bytes");
    numel *= static_cast<uint64_t>(d);
  }
  if (numel * 4 != data_bytes)
    fail(path, "shape ", shape_str(shape), " needs ", numel * 4, " data bytes but the file holds ", data_bytes);
  Tensor out = Tensor::empty(shape, DType::F32);
  if (data_bytes) file->read(data_start, out.raw(), data_bytes, ".npy data");
  return out;
}

}  // namespace tl
