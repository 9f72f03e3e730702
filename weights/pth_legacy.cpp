// The legacy stream of torch.save(..., _use_new_zipfile_serialization=False) (torch/serialization.py,
// _legacy_save / _legacy_load): pickles back to back -- the magic number 0x1950a86a20f9469cfc6c, the protocol
// version 1001, sys_info, the state_dict (persistent ids ('storage', <torch.XStorage>, key, location, numel,
// view_metadata)), the sorted list of storage keys -- then, for each key in that order, an 8-byte little-endian
// element count and the storage's raw little-endian bytes.
#include <cstring>
#include <set>

#include "weights/pth_detail.h"

namespace tl::pth_detail {

using Kind = pickle::Value::Kind;

namespace {

// torch.serialization.MAGIC_NUMBER as pickle's LONG1 writes it: 10 bytes, little-endian two's complement.
constexpr unsigned char kMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

// Length of the magic-number pickle at the start of `head` (PROTO, an optional FRAME, LONG1 of the magic number,
// STOP), or 0 when it is not there. Matched byte for byte: the number does not fit the unpickler's int64.
size_t magic_pickle_length(const unsigned char* head, size_t n) {
  size_t p = 0;
  if (n < 2 || head[0] != 0x80) return 0;
  p = 2;
  if (p < n && head[p] == 0x95) p += 9;  // FRAME and its 8-byte length (protocol 4+)
  if (n < p + 2 + sizeof kMagic + 1 || head[p] != 0x8a || head[p + 1] != sizeof kMagic) return 0;
  if (std::memcmp(head + p + 2, kMagic, sizeof kMagic) != 0 || head[p + 2 + sizeof kMagic] != '.') return 0;
  return p + 2 + sizeof kMagic + 1;
}

struct RootStorage {
  std::string type;
  uint64_t numel;
  std::string first_tensor;
};
struct View {
  std::string root;
  uint64_t offset, numel;
};

}  // namespace

PthFile::Contents open_legacy(const std::shared_ptr<const BinaryFile>& file) {
  const std::string& path = file->path();
  const uint64_t size = file->size();
  unsigned char head[32] = {};
  file->read(0, head, std::min<uint64_t>(size, sizeof head), "the magic number");
  uint64_t pos = magic_pickle_length(head, std::min<uint64_t>(size, sizeof head));
  if (pos == 0) fail(path, "invalid magic number: not a torch.save legacy stream (or a corrupt one)");

  uint64_t n = 0;
  pickle::ValuePtr version = unpickle_at(*file, pos, size, "protocol version", &n, 64);
  if (version->kind != Kind::Int || version->integer != 1001)
    fail(path, "legacy protocol version is ", version->kind == Kind::Int ? std::to_string(version->integer) : version->kind_name(),
         ", expected 1001");
  pos += n;
  pickle::ValuePtr sys_info = unpickle_at(*file, pos, size, "sys_info", &n, 4096);
  if (sys_info->kind != Kind::Dict) fail(path, "sys_info is a ", sys_info->kind_name(), ", not a dict");
  for (const auto& [k, v] : sys_info->entries)
    if (k->kind == Kind::String && k->text == "little_endian" && !(v->kind == Kind::Bool && v->boolean))
      fail(path, "the checkpoint was written on a big-endian machine; tl reads little-endian checkpoints");
  pos += n;
  pickle::ValuePtr root = unpickle_at(*file, pos, size, "state_dict pickle", &n);
  pos += n;
  pickle::ValuePtr keys = unpickle_at(*file, pos, size, "storage key list", &n);
  if (keys->kind != Kind::List) fail(path, "the storage key list is a ", keys->kind_name(), ", not a list");
  pos += n;

  PthFile::Contents c;
  c.format = "pth-legacy";
  std::map<std::string, RootStorage> roots;
  std::map<std::string, View> views;
  for (const auto& [name, value] : state_dict_items(path, root)) {
    if (value->kind != Kind::Tensor) fail(path, "state_dict entry '", name, "' is a ", value->kind_name(), ", not a tensor");
    const pickle::TensorRef& t = value->tensor;
    StoragePid pid = parse_storage_pid(path, name, *t.storage);
    const StorageTypeInfo& type = require_storage_type(path, name, pid.type);
    auto [it, fresh] = roots.emplace(pid.key, RootStorage{pid.type, pid.numel, name});
    if (!fresh && (it->second.type != pid.type || it->second.numel != pid.numel))
      fail(path, "tensor '", name, "' declares storage '", pid.key, "' as ", pid.numel, " ", pid.type,
           " elements, tensor '", it->second.first_tensor, "' as ", it->second.numel, " ", it->second.type);
    std::string key = pid.key;
    if (pid.view_key) {
      if (pid.view_offset > pid.numel || pid.view_numel > pid.numel - pid.view_offset)
        fail(path, "tensor '", name, "': storage view '", *pid.view_key, "' [", pid.view_offset, ",",
             pid.view_offset + pid.view_numel, ") lies outside its storage of ", pid.numel, " elements");
      View v{pid.key, pid.view_offset, pid.view_numel};
      auto [vit, vfresh] = views.emplace(*pid.view_key, v);
      if (!vfresh && (vit->second.root != v.root || vit->second.offset != v.offset || vit->second.numel != v.numel))
        fail(path, "tensor '", name, "' declares storage view '", *pid.view_key, "' differently from an earlier tensor");
      key = *pid.view_key;
    }
    c.entries.push_back(make_entry(path, name, type, key, t.storage_offset, t.size, t.stride));
  }

  // The storages follow the key list, each as <int64 element count><bytes>; a cut file keeps what it holds.
  bool cut = false;
  std::set<std::string> listed;
  for (const pickle::ValuePtr& k : keys->items) {
    std::string key = key_string(path, "a storage key in the key list", *k, false);
    auto it = roots.find(key);
    if (it == roots.end()) fail(path, "the storage key list names '", key, "', which no tensor uses");
    if (!listed.insert(key).second) fail(path, "the storage key list names '", key, "' twice");
    const StorageTypeInfo& type = require_storage_type(path, it->second.first_tensor, it->second.type);
    PthStorage s;
    s.type = it->second.type;
    s.element_size = type.element_size;
    s.where = str("storage '", key, "'");
    s.size_known = true;
    s.bytes = checked_mul(path, s.where, it->second.numel, type.element_size);
    if (!cut && size - pos >= 8) {
      unsigned char count_bytes[8];
      file->read(pos, count_bytes, 8, s.where + " element count");
      uint64_t count = le64(count_bytes);
      if (count != it->second.numel)
        fail(path, s.where, " at byte ", pos, " holds ", count, " elements but the pickle declares ", it->second.numel);
      s.file_offset = pos + 8;
      s.present = std::min(s.bytes, size - s.file_offset);
      cut = s.present < s.bytes;
      pos = s.file_offset + s.present;
    } else {
      cut = true;
    }
    c.storages.emplace(key, s);
  }
  for (const auto& [key, r] : roots)
    if (!listed.count(key)) fail(path, "storage '", key, "' of tensor '", r.first_tensor, "' is not in the storage key list");
  for (const auto& [key, v] : views) {
    if (c.storages.count(key)) fail(path, "storage view '", key, "' has the key of a storage");
    PthStorage s = c.storages.at(v.root);
    uint64_t skip = v.offset * s.element_size;  // within the root's checked byte count
    s.where = str("storage view '", key, "' of '", v.root, "'");
    s.file_offset += skip;
    s.bytes = v.numel * s.element_size;
    s.present = s.present > skip ? std::min(s.bytes, s.present - skip) : 0;
    c.storages.emplace(key, s);
  }
  return c;
}

}  // namespace tl::pth_detail
