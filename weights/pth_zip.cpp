// The zip layout of torch.save (PyTorch >= 1.6): <archive>/data.pkl is the state_dict, whose tensors'
// persistent ids ('storage', <torch.XStorage>, key, location, numel) name the stored entries <archive>/data/<key>.
// <archive> is the folder of the first entry, as PyTorch's reader takes it.
#include "weights/pth_detail.h"
#include "weights/zip_reader.h"

namespace tl::pth_detail {

using Kind = pickle::Value::Kind;

PthFile::Contents open_zip(const std::shared_ptr<const BinaryFile>& file) {
  const std::string& path = file->path();
  ZipReader zip = ZipReader::open(file);
  if (zip.entries().empty()) fail(path, "the zip archive has no entries");
  const std::string& first = zip.entries().front().name;
  size_t slash = first.find('/');
  if (slash == std::string::npos) fail(path, "zip entry '", first, "' is not inside an archive folder: not a torch.save checkpoint");
  std::string prefix = first.substr(0, slash + 1);

  const ZipEntry* pkl = zip.find(prefix + "data.pkl");
  if (!pkl) fail(path, "no '", prefix, "data.pkl' in the zip archive: not a torch.save checkpoint");
  if (!pkl->complete)
    fail(path, "zip entry '", pkl->name, "' (the pickled state_dict) is truncated: the file holds ", pkl->size,
         " of its bytes");
  std::string pickled = zip.read_string(*pkl);
  size_t consumed = 0;
  pickle::ValuePtr root = pickle::unpickle(reinterpret_cast<const unsigned char*>(pickled.data()), pickled.size(),
                                           path + ": " + pkl->name, &consumed);

  PthFile::Contents c;
  c.format = "pth-zip";
  for (const auto& [name, value] : state_dict_items(path, root)) {
    if (value->kind != Kind::Tensor) fail(path, "state_dict entry '", name, "' is a ", value->kind_name(), ", not a tensor");
    const pickle::TensorRef& t = value->tensor;
    StoragePid pid = parse_storage_pid(path, name, *t.storage);
    if (pid.view_key) fail(path, "tensor '", name, "': storage views do not occur in the zip layout");
    const StorageTypeInfo& type = require_storage_type(path, name, pid.type);
    c.entries.push_back(make_entry(path, name, type, pid.key, t.storage_offset, t.size, t.stride));

    uint64_t bytes = checked_mul(path, str("storage '", pid.key, "' of ", pid.numel, " elements"), pid.numel,
                                 type.element_size);
    if (auto it = c.storages.find(pid.key); it != c.storages.end()) {
      if (it->second.type != pid.type || it->second.bytes != bytes)
        fail(path, "tensor '", name, "' declares storage '", pid.key, "' as ", pid.numel, " ", pid.type,
             " elements, an earlier tensor differently");
      continue;
    }
    PthStorage s;
    s.type = pid.type;
    s.element_size = type.element_size;
    s.size_known = true;
    s.bytes = bytes;
    std::string entry_name = prefix + "data/" + pid.key;
    s.where = str("zip entry '", entry_name, "'");
    const ZipEntry* z = zip.find(entry_name);
    if (!z) {
      // Without a central directory the archive was cut short: entries after the cut are missing.
      if (zip.has_central_directory())
        fail(path, "no zip entry '", entry_name, "' for storage '", pid.key, "' of tensor '", name, "'");
      s.present = 0;
    } else {
      if (z->complete && z->size != s.bytes)
        fail(path, s.where, " holds ", z->size, " bytes but storage '", pid.key, "' is declared as ", pid.numel, " ",
             pid.type, " elements (", s.bytes, " bytes)");
      if (!z->complete && z->size > s.bytes)
        fail(path, s.where, ": no data descriptor follows its ", s.bytes, " bytes (the file is corrupt)");
      s.file_offset = z->data_offset;
      s.present = z->size;
      s.has_crc = z->complete;
      s.crc32 = z->crc32;
    }
    c.storages.emplace(pid.key, s);
  }
  return c;
}

}  // namespace tl::pth_detail
