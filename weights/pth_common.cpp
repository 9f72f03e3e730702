// Helpers shared by the .pth format parsers: storage types, the state_dict's shape, persistent ids, tensor geometry.
#include <algorithm>
#include <limits>

#include "weights/pth_detail.h"

namespace tl::pth_detail {

using pickle::Value;
using Kind = pickle::Value::Kind;

namespace {
constexpr uint64_t kMax63 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
constexpr size_t kMaxRank = 64;  // PyTorch's limit

constexpr StorageTypeInfo kStorageTypes[] = {
    {"FloatStorage", 4, DType::F32}, {"DoubleStorage", 8, DType::F64}, {"HalfStorage", 2, DType::F32},
    {"BFloat16Storage", 2, DType::F32}, {"LongStorage", 8, DType::I64}, {"IntStorage", 4, DType::I64},
    {"ShortStorage", 2, DType::I64}, {"CharStorage", 1, DType::I64}, {"ByteStorage", 1, DType::I64},
    {"BoolStorage", 1, DType::I64},
};

// Text a persistent id holds as str (Python 3) or bytes (Python 2 pickles read with encoding='bytes').
std::optional<std::string> text_of(const Value& v) {
  if (v.kind == Kind::String || v.kind == Kind::Bytes) return v.text;
  return std::nullopt;
}
}  // namespace

const StorageTypeInfo* storage_type_info(const std::string& name) {
  for (const StorageTypeInfo& t : kStorageTypes)
    if (name == t.name) return &t;
  return nullptr;
}

const StorageTypeInfo& require_storage_type(const std::string& path, const std::string& tensor, const std::string& name) {
  const StorageTypeInfo* t = storage_type_info(name);
  if (!t)
    fail(path, "tensor '", tensor, "' has storage type '", name,
         "' (tl reads Float, Double, Half, BFloat16, Long, Int, Short, Char, Byte and Bool storages)");
  return *t;
}

std::vector<std::pair<std::string, pickle::ValuePtr>> state_dict_items(const std::string& path,
                                                                       const pickle::ValuePtr& root) {
  if (root->kind != Kind::Dict)
    fail(path, "the checkpoint holds a ", root->kind_name(), ", not a state_dict (a dict of tensors)");
  std::vector<std::pair<std::string, pickle::ValuePtr>> items;
  for (const auto& [key, value] : root->entries) {
    if (key->kind != Kind::String) fail(path, "state_dict key is a ", key->kind_name(), ", not a string");
    items.emplace_back(key->text, value);
  }
  return items;
}

std::string key_string(const std::string& path, const std::string& what, const Value& key, bool numeric) {
  if (key.kind == Kind::Int) return std::to_string(key.integer);
  std::optional<std::string> text = text_of(key);
  if (!text) fail(path, what, " is a ", key.kind_name(), ", not a key");
  if (!numeric) return *text;
  // int(saved_id): an optional sign and decimal digits.
  const std::string& s = *text;
  size_t start = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  bool digits = s.size() > start && s.size() - start <= 18 &&
                std::all_of(s.begin() + static_cast<ptrdiff_t>(start), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) fail(path, what, " '", s, "' is not an integer key");
  return std::to_string(std::stoll(s));
}

StoragePid parse_storage_pid(const std::string& path, const std::string& tensor, const Value& persistent) {
  std::string what = str("tensor '", tensor, "': persistent id");
  if (persistent.kind != Kind::Persistent) fail(path, "tensor '", tensor, "': storage is a ", persistent.kind_name());
  const Value& pid = *persistent.persistent_id;
  if (pid.kind != Kind::Tuple || (pid.items.size() != 5 && pid.items.size() != 6))
    fail(path, what, " is not ('storage', type, key, location, numel[, view])");
  const auto& f = pid.items;
  if (text_of(*f[0]) != std::optional<std::string>("storage"))
    fail(path, what, " is not a storage (its first item is not 'storage')");
  if (f[1]->kind != Kind::Global || f[1]->module != "torch") fail(path, what, ": storage type is not a torch storage class");
  StoragePid s;
  s.type = f[1]->name;
  s.key = key_string(path, what + " key", *f[2], false);
  if (!text_of(*f[3])) fail(path, what, ": location is a ", f[3]->kind_name(), ", not a string");
  if (f[4]->kind != Kind::Int || f[4]->integer < 0) fail(path, what, ": element count is not a non-negative int");
  s.numel = static_cast<uint64_t>(f[4]->integer);
  if (f.size() == 6 && f[5]->kind != Kind::None) {
    const Value& v = *f[5];
    if (v.kind != Kind::Tuple || v.items.size() != 3 || v.items[1]->kind != Kind::Int || v.items[2]->kind != Kind::Int ||
        v.items[1]->integer < 0 || v.items[2]->integer < 0)
      fail(path, what, ": view metadata is not (key, offset, numel)");
    s.view_key = key_string(path, what + " view key", *v.items[0], false);
    s.view_offset = static_cast<uint64_t>(v.items[1]->integer);
    s.view_numel = static_cast<uint64_t>(v.items[2]->integer);
  }
  return s;
}

uint64_t checked_mul(const std::string& path, const std::string& what, uint64_t a, uint64_t b) {
  if (a != 0 && b > kMax63 / a) fail(path, what, " overflows");
  return a * b;
}

uint64_t needed_bytes(const std::string& path, const PthEntry& e, uint64_t element_size) {
  std::string what = str("tensor '", e.name, "': the storage range of size ", shape_str(e.shape), " stride ",
                         shape_str(e.stride), " offset ", e.storage_offset);
  uint64_t last = static_cast<uint64_t>(e.storage_offset);
  for (size_t i = 0; i < e.shape.size(); ++i) {
    if (e.shape[i] == 0) return 0;
    uint64_t step = checked_mul(path, what, static_cast<uint64_t>(e.shape[i] - 1), static_cast<uint64_t>(e.stride[i]));
    if (step >= kMax63 - last) fail(path, what, " overflows");
    last += step;
  }
  return checked_mul(path, what, last + 1, element_size);
}

PthEntry make_entry(const std::string& path, const std::string& name, const StorageTypeInfo& type,
                    const std::string& storage_key, int64_t storage_offset, const std::vector<int64_t>& size,
                    const std::vector<int64_t>& stride) {
  if (size.size() != stride.size())
    fail(path, "tensor '", name, "': size ", shape_str(size), " and stride ", shape_str(stride), " differ in rank");
  if (size.size() > kMaxRank) fail(path, "tensor '", name, "' has ", size.size(), " dimensions (at most ", kMaxRank, ")");
  bool negative = storage_offset < 0 || std::any_of(size.begin(), size.end(), [](int64_t v) { return v < 0; }) ||
                  std::any_of(stride.begin(), stride.end(), [](int64_t v) { return v < 0; });
  if (negative)
    fail(path, "tensor '", name, "': size ", shape_str(size), ", stride ", shape_str(stride), " and offset ",
         storage_offset, " must be non-negative");
  uint64_t numel = 1;
  for (int64_t d : size) numel = checked_mul(path, str("tensor '", name, "': size ", shape_str(size)), numel, d);
  PthEntry e{name, type.name, type.dtype, size, stride, storage_offset, storage_key};
  needed_bytes(path, e, type.element_size);  // throws when the range overflows
  return e;
}

pickle::ValuePtr unpickle_at(const BinaryFile& file, uint64_t offset, uint64_t end, const std::string& context,
                             uint64_t* consumed, uint64_t first_window) {
  if (offset > end || end > file.size()) fail(file.path(), context, ": pickle at byte ", offset, " is outside the file");
  uint64_t window = std::min(first_window, end - offset);
  std::vector<unsigned char> buf;
  while (true) {
    buf.resize(static_cast<size_t>(window));
    file.read(offset, buf.data(), window, context);
    try {
      size_t used = 0;
      pickle::ValuePtr v = pickle::unpickle(buf.data(), buf.size(), file.path() + ": " + context, &used);
      if (consumed) *consumed = used;
      return v;
    } catch (const Error&) {
      if (window == end - offset) throw;  // the whole range was there: the error is real
      window = std::min(window * 4, end - offset);
    }
  }
}

}  // namespace tl::pth_detail
