#include "weights/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>

#include "engine/error.h"
#include "weights/json.h"

namespace tl {

// Tensor data goes to and from disk as raw memory, which is little-endian only on such hosts.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(str(path, ": ", args...));
}

// Every dtype name the safetensors format defines. We read three; the rest are named as
// unsupported (a real format we cannot hold yet) rather than unknown (a corrupt or foreign file).
struct DTypeInfo {
  const char* name;
  bool supported;
  DType dtype;
};
constexpr DTypeInfo kDTypes[] = {
    {"F32", true, DType::F32},       {"F64", true, DType::F64},       {"I64", true, DType::I64},
    {"F16", false, DType::F32},      {"BF16", false, DType::F32},     {"I32", false, DType::F32},
    {"I16", false, DType::F32},      {"I8", false, DType::F32},       {"U8", false, DType::F32},
    {"U16", false, DType::F32},      {"U32", false, DType::F32},      {"U64", false, DType::F32},
    {"BOOL", false, DType::F32},     {"F8_E4M3", false, DType::F32},  {"F8_E5M2", false, DType::F32},
    {"F8_E8M0", false, DType::F32},  {"F6_E2M3", false, DType::F32},  {"F6_E3M2", false, DType::F32},
    {"F4", false, DType::F32},       {"C64", false, DType::F32},
};

DType parse_dtype(const std::string& path, const std::string& tensor, const json::Value& v) {
  if (!v.is_string()) fail(path, "tensor '", tensor, "': \"dtype\" is not a string");
  for (const DTypeInfo& info : kDTypes) {
    if (v.as_string() != info.name) continue;
    if (!info.supported) fail(path, "unsupported dtype ", info.name, " for tensor '", tensor, "' (tl reads F32, F64, I64)");
    return info.dtype;
  }
  fail(path, "unknown dtype ", json::escape_string(v.as_string()), " for tensor '", tensor, "'");
}

// Shape with every product checked: numel and the byte size both fit in int64.
Shape parse_shape(const std::string& path, const std::string& tensor, const json::Value& v, DType dtype,
                  uint64_t& nbytes) {
  if (!v.is_array()) fail(path, "tensor '", tensor, "': \"shape\" is not an array");
  const json::Array& dims = v.as_array();
  if (dims.size() > kMaxSafetensorsRank)
    fail(path, "tensor '", tensor, "': shape has ", dims.size(), " dimensions (at most ", kMaxSafetensorsRank, ")");
  Shape shape;
  for (const json::Value& d : dims) {
    if (!d.is_int() || d.as_int() < 0) fail(path, "tensor '", tensor, "': shape holds a value that is not a non-negative integer");
    shape.push_back(d.as_int());
  }
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t numel = 1;
  for (int64_t d : shape) {
    uint64_t ud = static_cast<uint64_t>(d);
    if (ud != 0 && numel > kMax / ud) fail(path, "tensor '", tensor, "': shape ", shape_str(shape), " overflows");
    numel *= ud;
  }
  uint64_t size = dtype_size(dtype);
  if (numel > kMax / size) fail(path, "tensor '", tensor, "': shape ", shape_str(shape), " overflows");
  nbytes = numel * size;
  return shape;
}

void parse_offsets(const std::string& path, const std::string& tensor, const json::Value& v, uint64_t& begin,
                   uint64_t& end) {
  if (!v.is_array() || v.as_array().size() != 2)
    fail(path, "tensor '", tensor, "': \"data_offsets\" is not an array of two integers");
  for (const json::Value& o : v.as_array())
    if (!o.is_int() || o.as_int() < 0)
      fail(path, "tensor '", tensor, "': \"data_offsets\" holds a value that is not a non-negative integer");
  begin = static_cast<uint64_t>(v.as_array()[0].as_int());
  end = static_cast<uint64_t>(v.as_array()[1].as_int());
}

std::string range_str(uint64_t begin, uint64_t end) { return str("[", begin, ",", end, ")"); }

SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const json::Value& v,
                             uint64_t data_bytes) {
  if (name.empty()) fail(path, "a tensor has an empty name");
  if (!v.is_object()) fail(path, "tensor '", name, "': entry is not a JSON object");
  for (const auto& [key, value] : v.as_object())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      fail(path, "tensor '", name, "': unexpected field ", json::escape_string(key));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.find(key)) fail(path, "tensor '", name, "': missing \"", key, "\"");

  SafetensorsEntry e;
  e.name = name;
  e.dtype = parse_dtype(path, name, *v.find("dtype"));
  uint64_t nbytes = 0;
  e.shape = parse_shape(path, name, *v.find("shape"), e.dtype, nbytes);
  parse_offsets(path, name, *v.find("data_offsets"), e.begin, e.end);
  if (e.end < e.begin)
    fail(path, "tensor '", name, "': data_offsets [", e.begin, ",", e.end, "] end before they begin");
  if (e.end > data_bytes)
    fail(path, "tensor '", name, "': data_offsets [", e.begin, ",", e.end, "] run past the end of the ",
         data_bytes, "-byte data section");
  if (e.end - e.begin != nbytes)
    fail(path, "tensor '", name, "': data_offsets [", e.begin, ",", e.end, "] hold ", e.end - e.begin,
         " bytes but ", dtype_name(e.dtype), shape_str(e.shape), " needs ", nbytes);
  return e;
}

// The tensors, taken in offset order, must tile [0, data_bytes) exactly.
void check_tiling(const std::string& path, const std::vector<SafetensorsEntry>& entries, uint64_t data_bytes) {
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::stable_sort(sorted.begin(), sorted.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry* e : sorted) {
    if (e->begin < covered)
      fail(path, "tensors '", previous->name, "' ", range_str(previous->begin, previous->end), " and '", e->name,
           "' ", range_str(e->begin, e->end), " overlap");
    if (e->begin > covered)
      fail(path, "hole in the data section: bytes ", range_str(covered, e->begin), " belong to no tensor");
    covered = e->end;
    previous = e;
  }
  if (covered != data_bytes)
    fail(path, "hole in the data section: bytes ", range_str(covered, data_bytes), " belong to no tensor");
}

// POSIX file descriptor that closes itself.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

uint64_t file_size(const std::string& path, int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) fail(path, "cannot stat: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

// Reads exactly `bytes` at `offset`, retrying short reads and EINTR.
void read_exact(const std::string& path, int fd, void* dst, uint64_t bytes, uint64_t offset, const char* what) {
  char* p = static_cast<char*>(dst);
  while (bytes > 0) {
    ssize_t n = ::pread(fd, p, static_cast<size_t>(std::min<uint64_t>(bytes, 1u << 30)), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path, "cannot read ", what, ": ", std::strerror(errno));
    if (n == 0) fail(path, "unexpected end of file reading ", what, " (was the file changed?)");
    p += n;
    bytes -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

void write_all(const std::string& path, int fd, const void* src, size_t bytes) {
  const char* p = static_cast<const char*>(src);
  while (bytes > 0) {
    ssize_t n = ::write(fd, p, std::min<size_t>(bytes, 1u << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(path, "cannot write: ", std::strerror(errno));
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

}  // namespace

SafetensorsFile SafetensorsFile::from_header(const std::string& path, std::string_view header, uint64_t data_bytes) {
  json::Value root;
  try {
    root = json::parse(header);
  } catch (const Error& e) {
    fail(path, "header is not valid JSON: ", e.what());
  }
  if (!root.is_object()) fail(path, "header is not a JSON object (it is a JSON ", json::type_name(root.type()), ")");

  SafetensorsFile file;
  file.path_ = path;
  file.data_bytes_ = data_bytes;
  for (const auto& [key, value] : root.as_object()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(path, "__metadata__ is not a JSON object");
      for (const auto& [mk, mv] : value.as_object()) {
        if (!mv.is_string()) fail(path, "__metadata__ value for ", json::escape_string(mk), " is not a string");
        file.metadata_[mk] = mv.as_string();
      }
      continue;
    }
    file.index_[key] = file.entries_.size();
    file.entries_.push_back(parse_entry(path, key, value, data_bytes));
  }
  check_tiling(path, file.entries_, data_bytes);
  return file;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail(path, "cannot open: ", std::strerror(errno));
  uint64_t size = file_size(path, f.fd);
  if (size < 8) fail(path, "file is ", size, " bytes, too short for the 8-byte header length");
  unsigned char le[8];
  read_exact(path, f.fd, le, 8, 0, "the header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | le[i];
  if (n > kMaxSafetensorsHeaderBytes)
    fail(path, "header length ", n, " exceeds the limit of ", kMaxSafetensorsHeaderBytes, " bytes");
  if (n > size - 8) fail(path, "header length ", n, " runs past the end of the file (", size, " bytes)");
  std::string header(static_cast<size_t>(n), '\0');
  read_exact(path, f.fd, header.data(), n, 8, "the header");
  SafetensorsFile file = from_header(path, header, size - 8 - n);
  file.data_start_ = 8 + n;
  return file;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Tensor SafetensorsFile::read(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(path_, "no tensor named '", name, "'");
  Tensor t = Tensor::empty(e->shape, e->dtype);
  if (t.nbytes() == 0) return t;
  Fd f;
  f.fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail(path_, "cannot open: ", std::strerror(errno));
  // The offsets were checked against the size at open(); a file changed since then is refused.
  if (file_size(path_, f.fd) != data_start_ + data_bytes_) fail(path_, "file changed size since it was opened");
  read_exact(path_, f.fd, t.raw(), e->end - e->begin, data_start_ + e->begin, str("tensor '", name, "'").c_str());
  return t;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  std::string header = "{";
  try {
    if (!metadata.empty()) {
      header += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [k, v] : metadata) {
        header += str(first ? "" : ",", json::escape_string(k), ":", json::escape_string(v));
        first = false;
      }
      header += "}";
    }
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
      if (name.empty()) fail(path, "a tensor has an empty name");
      if (name == "__metadata__") fail(path, "a tensor may not be named __metadata__");
      if (!names.insert(name).second) fail(path, "duplicate tensor name '", name, "'");
      if (!t.defined()) fail(path, "tensor '", name, "' is undefined");
      if (t.device() != Device::CPU) fail(path, "tensor '", name, "' is ", t.describe(), "; copy it to the CPU first");
      // shape_str writes "[2,3]", which is also the JSON array.
      header += str(header.size() > 1 ? "," : "", json::escape_string(name), ":{\"dtype\":\"", dtype_name(t.dtype()),
                    "\",\"shape\":", shape_str(t.shape()), ",\"data_offsets\":[", offset, ",", offset + t.nbytes(), "]}");
      offset += t.nbytes();
    }
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.rfind(path + ": ", 0) == 0) throw;
    fail(path, what);  // invalid UTF-8 in a name or metadata string
  }
  header += "}";
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  Fd f;
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd < 0) fail(path, "cannot create ", tmp, ": ", std::strerror(errno));
  try {
    unsigned char le[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(n >> (8 * i));
    write_all(path, f.fd, le, 8);
    write_all(path, f.fd, header.data(), header.size());
    for (const auto& [name, t] : tensors)
      if (t.nbytes()) write_all(path, f.fd, t.raw(), t.nbytes());
    if (::fsync(f.fd) != 0) fail(path, "cannot fsync ", tmp, ": ", std::strerror(errno));
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) fail(path, "cannot close ", tmp, ": ", std::strerror(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail(path, "cannot rename ", tmp, " over it: ", std::strerror(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable; best effort, since some filesystems refuse to fsync a directory.
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd >= 0) ::fsync(d.fd);
}

}  // namespace tl
