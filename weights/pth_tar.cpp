// The tar layout of torch.save before 0.4 (torch/serialization.py, legacy_load inside _legacy_load):
//   storages  pickled count; per storage a pickled (key, location, <torch.XStorage>), an 8-byte little-endian
//             element count and the raw bytes; then the pickled storage views [(key, root key, offset, numel)]
//   tensors   pickled count; per tensor a pickled (key, storage key, <torch.XTensor>), int32 ndim, 4 bytes
//             (ndim once took 8), ndim int64 sizes, ndim int64 strides, int64 storage offset
//   pickle    the state_dict; its persistent ids are tensor keys (decimal strings of the int keys above)
//   sys_info  pickled {protocol_version, little_endian, type_sizes}
// The storages member comes last and holds nearly all the bytes; when the file is cut inside it, the storages
// before the cut are read normally and the rest are missing (their tensors' storage type then comes from the
// tensor class, torch.XTensor -> XStorage).
#include <cstring>

#include "weights/pth_detail.h"
#include "weights/tar_reader.h"

namespace tl::pth_detail {

using Kind = pickle::Value::Kind;

namespace {

constexpr int64_t kMaxRank = 64;

struct TensorRecord {
  std::string storage_key;
  std::string class_storage_type;  // "FloatStorage" for torch.FloatTensor; "" when the class is not one
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
};

const TarMember& required_member(const TarReader& tar, const std::string& name) {
  const TarMember* m = tar.find(name);
  if (!m) fail(tar.path(), "no '", name, "' member in the tar archive: not a torch.save checkpoint");
  if (!m->complete())
    fail(tar.path(), "tar member '", name, "' is truncated: it has ", m->size, " bytes, the file holds ", m->present);
  return *m;
}

const pickle::Value& tuple_of(const std::string& path, const std::string& what, const pickle::ValuePtr& v, size_t n) {
  if (v->kind != Kind::Tuple || v->items.size() != n) fail(path, what, " is a ", v->kind_name(), ", not a tuple of ", n);
  return *v;
}

// Storages from the `storages` member, as far as the file holds them.
std::map<std::string, PthStorage> read_storages(const BinaryFile& file, const TarMember& m) {
  const std::string& path = file.path();
  std::map<std::string, PthStorage> storages;
  const uint64_t end = m.data_offset + m.present;
  uint64_t pos = m.data_offset, n = 0;
  // A pickle that does not parse inside a cut member is where the cut is; in a whole member it is corrupt.
  auto next_pickle = [&](const char* what) -> pickle::ValuePtr {
    try {
      pickle::ValuePtr v = unpickle_at(file, pos, end, str("tar member 'storages': ", what), &n, 4096);
      pos += n;
      return v;
    } catch (const Error&) {
      if (m.complete()) throw;
      return nullptr;
    }
  };
  pickle::ValuePtr count = next_pickle("storage count");
  if (!count) return storages;
  if (count->kind != Kind::Int || count->integer < 0) fail(path, "tar member 'storages': the storage count is not an int");
  for (int64_t i = 0; i < count->integer; ++i) {
    pickle::ValuePtr header = next_pickle("storage header");
    if (!header) return storages;
    const pickle::Value& h = tuple_of(path, "tar member 'storages': a storage header", header, 3);
    std::string key = key_string(path, "tar member 'storages': a storage key", *h.items[0], true);
    if (h.items[2]->kind != Kind::Global || h.items[2]->module != "torch")
      fail(path, "storage '", key, "' in tar member 'storages': its type is not a torch storage class");
    PthStorage s;
    s.type = h.items[2]->name;
    const StorageTypeInfo* type = storage_type_info(s.type);
    if (!type) fail(path, "storage '", key, "' has storage type '", s.type, "', which tl does not read");
    s.element_size = type->element_size;
    s.where = str("storage '", key, "' in tar member 'storages'");
    bool whole = false;
    if (end - pos >= 8) {
      unsigned char count_bytes[8];
      file.read(pos, count_bytes, 8, s.where + " element count");
      s.size_known = true;
      s.bytes = checked_mul(path, s.where, le64(count_bytes), s.element_size);
      s.file_offset = pos + 8;
      s.present = std::min(s.bytes, end - s.file_offset);
      whole = s.present == s.bytes;
      if (!whole && m.complete())
        fail(path, s.where, " has ", s.bytes, " bytes but the member ends after ", s.present);
      pos = s.file_offset + s.present;
    }
    if (!storages.emplace(key, s).second) fail(path, "storage '", key, "' appears twice in tar member 'storages'");
    if (!whole) return storages;
  }
  pickle::ValuePtr views = next_pickle("storage views");
  if (!views) return storages;
  if (views->kind != Kind::List) fail(path, "tar member 'storages': the storage views are not a list");
  for (const pickle::ValuePtr& view : views->items) {
    const pickle::Value& v = tuple_of(path, "tar member 'storages': a storage view", view, 4);
    std::string key = key_string(path, "a storage view key", *v.items[0], true);
    std::string root_key = key_string(path, "a storage view's root key", *v.items[1], true);
    auto root = storages.find(root_key);
    if (root == storages.end()) fail(path, "storage view '", key, "' refers to unknown storage '", root_key, "'");
    if (v.items[2]->kind != Kind::Int || v.items[3]->kind != Kind::Int || v.items[2]->integer < 0 || v.items[3]->integer < 0)
      fail(path, "storage view '", key, "': offset and size must be non-negative ints");
    PthStorage s = root->second;
    uint64_t skip = checked_mul(path, "a storage view offset", static_cast<uint64_t>(v.items[2]->integer), s.element_size);
    uint64_t bytes = checked_mul(path, "a storage view size", static_cast<uint64_t>(v.items[3]->integer), s.element_size);
    if (skip > s.bytes || bytes > s.bytes - skip)
      fail(path, "storage view '", key, "' lies outside storage '", root_key, "' of ", s.bytes, " bytes");
    s.where = str("storage view '", key, "' of '", root_key, "'");
    s.file_offset += skip;
    s.bytes = bytes;
    s.present = bytes;  // the root is whole: the views list comes after every storage
    if (!storages.emplace(key, s).second) fail(path, "storage view '", key, "' has the key of another storage");
  }
  return storages;
}

std::map<std::string, TensorRecord> read_tensor_records(const std::string& path, const std::string& bytes) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  size_t pos = 0, n = 0;
  auto next_pickle = [&](const char* what) {
    pickle::ValuePtr v = pickle::unpickle(data + pos, size - pos, str(path, ": tar member 'tensors': ", what), &n);
    pos += n;
    return v;
  };
  auto next_int64 = [&](const std::string& what) {
    if (size - pos < 8) fail(path, "tar member 'tensors' ends inside ", what);
    int64_t v = static_cast<int64_t>(le64(data + pos));
    pos += 8;
    return v;
  };
  pickle::ValuePtr count = next_pickle("tensor count");
  if (count->kind != Kind::Int || count->integer < 0) fail(path, "tar member 'tensors': the tensor count is not an int");
  std::map<std::string, TensorRecord> records;
  for (int64_t i = 0; i < count->integer; ++i) {
    pickle::ValuePtr header = next_pickle("tensor header");
    const pickle::Value& h = tuple_of(path, "tar member 'tensors': a tensor header", header, 3);
    std::string key = key_string(path, "tar member 'tensors': a tensor key", *h.items[0], true);
    std::string what = str("the record of tensor key '", key, "'");
    TensorRecord r;
    r.storage_key = key_string(path, "tar member 'tensors': a storage key", *h.items[1], true);
    const pickle::Value& cls = *h.items[2];
    if (cls.kind == Kind::Global && cls.module == "torch" && cls.name.size() > 6 &&
        cls.name.compare(cls.name.size() - 6, 6, "Tensor") == 0)
      r.class_storage_type = cls.name.substr(0, cls.name.size() - 6) + "Storage";
    int64_t ndim = static_cast<int32_t>(static_cast<uint32_t>(next_int64(what)));  // int32, then 4 skipped bytes
    if (ndim < 0 || ndim > kMaxRank) fail(path, what, " has ", ndim, " dimensions (0 to ", kMaxRank, ")");
    for (int64_t d = 0; d < ndim; ++d) r.size.push_back(next_int64(what));
    for (int64_t d = 0; d < ndim; ++d) r.stride.push_back(next_int64(what));
    r.offset = next_int64(what);
    if (!records.emplace(key, r).second) fail(path, "tensor key '", key, "' appears twice in tar member 'tensors'");
  }
  return records;
}

}  // namespace

PthFile::Contents open_tar(const std::shared_ptr<const BinaryFile>& file) {
  const std::string& path = file->path();
  TarReader tar = TarReader::open(file);
  const TarMember& pickle_member = required_member(tar, "pickle");
  const TarMember& tensors_member = required_member(tar, "tensors");
  if (const TarMember* sys = tar.find("sys_info"); sys && sys->complete()) {
    std::string bytes = tar.read_string(*sys);
    pickle::ValuePtr info = pickle::unpickle(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                                             path + ": tar member 'sys_info'");
    if (info->kind == Kind::Dict)
      for (const auto& [k, v] : info->entries)
        if (k->kind == Kind::String && k->text == "little_endian" && !(v->kind == Kind::Bool && v->boolean))
          fail(path, "the checkpoint was written on a big-endian machine; tl reads little-endian checkpoints");
  }
  const TarMember* storages_member = tar.find("storages");
  bool storages_whole = storages_member && storages_member->complete();

  PthFile::Contents c;
  c.format = "pth-tar";
  if (storages_member) c.storages = read_storages(*file, *storages_member);
  std::map<std::string, TensorRecord> records = read_tensor_records(path, tar.read_string(tensors_member));

  std::string pickled = tar.read_string(pickle_member);
  pickle::ValuePtr root = pickle::unpickle(reinterpret_cast<const unsigned char*>(pickled.data()), pickled.size(),
                                           path + ": tar member 'pickle'");
  for (const auto& [name, value] : state_dict_items(path, root)) {
    if (value->kind != Kind::Persistent)
      fail(path, "state_dict entry '", name, "' is a ", value->kind_name(), ", not a tensor (a persistent tensor key)");
    std::string key = key_string(path, str("tensor '", name, "': persistent id"), *value->persistent_id, true);
    auto rec = records.find(key);
    if (rec == records.end()) fail(path, "tensor '", name, "': key '", key, "' is not in tar member 'tensors'");
    const TensorRecord& r = rec->second;
    auto st = c.storages.find(r.storage_key);
    if (st == c.storages.end()) {
      if (storages_whole)
        fail(path, "tensor '", name, "': storage '", r.storage_key, "' is not in tar member 'storages'");
      // Past the cut: known only by its key; its type comes from the tensor's class.
      if (r.class_storage_type.empty())
        fail(path, "tensor '", name, "': storage '", r.storage_key, "' is cut off and the tensor's class is unknown");
      PthStorage s;
      s.type = r.class_storage_type;
      s.element_size = require_storage_type(path, name, s.type).element_size;
      s.where = str("storage '", r.storage_key, "' in tar member 'storages'");
      st = c.storages.emplace(r.storage_key, s).first;
    }
    const StorageTypeInfo& type = require_storage_type(path, name, st->second.type);
    c.entries.push_back(make_entry(path, name, type, r.storage_key, r.offset, r.size, r.stride));
  }
  return c;
}

}  // namespace tl::pth_detail
