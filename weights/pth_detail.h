#pragma once
// Internals shared by the .pth format parsers (weights/pth_zip.cpp, pth_legacy.cpp, pth_tar.cpp) and
// weights/pth.cpp. Not part of the public interface: use weights/pth.h.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "weights/binary_file.h"
#include "weights/pickle.h"
#include "weights/pth.h"

namespace tl::pth_detail {

template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(str(path, ": ", args...));
}

struct StorageTypeInfo {
  const char* name;  // "FloatStorage"
  uint64_t element_size;
  DType dtype;  // what read() returns
};
// nullptr for a storage type tl does not read.
const StorageTypeInfo* storage_type_info(const std::string& name);
// Checked: the type must be one tl reads; `tensor` names the tensor in the message.
const StorageTypeInfo& require_storage_type(const std::string& path, const std::string& tensor, const std::string& name);

// The (key, value) pairs of a state_dict pickle: the root must be a dict with str keys.
std::vector<std::pair<std::string, pickle::ValuePtr>> state_dict_items(const std::string& path,
                                                                       const pickle::ValuePtr& root);

// A storage key as a string: a str as is, an int in decimal (the tar layout keys storages and tensors by int,
// and its persistent ids are the same ints as decimal strings, which torch reads with int()).
std::string key_string(const std::string& path, const std::string& what, const pickle::Value& key, bool numeric);

// Persistent id of a storage in the zip and legacy layouts: ('storage', <torch.XStorage>, key, location, numel)
// plus, in the legacy layout, view_metadata (None, or (view_key, offset, numel) in elements).
struct StoragePid {
  std::string type, key;
  uint64_t numel = 0;
  std::optional<std::string> view_key;
  uint64_t view_offset = 0, view_numel = 0;
};
StoragePid parse_storage_pid(const std::string& path, const std::string& tensor, const pickle::Value& persistent);

// An entry with its geometry checked: rank at most 64, sizes, strides and offset non-negative, and the bytes it
// spans within its storage (see needed_bytes) representable.
PthEntry make_entry(const std::string& path, const std::string& name, const StorageTypeInfo& type,
                    const std::string& storage_key, int64_t storage_offset, const std::vector<int64_t>& size,
                    const std::vector<int64_t>& stride);
// Bytes of its storage a tensor reaches: (offset + 1 + sum((size_i - 1) * stride_i)) * element size; 0 when empty.
uint64_t needed_bytes(const std::string& path, const PthEntry& entry, uint64_t element_size);

// a * b, throwing "<path>: <what> overflows" when it does not fit in 63 bits.
uint64_t checked_mul(const std::string& path, const std::string& what, uint64_t a, uint64_t b);

// Unpickles the pickle that starts at `offset` and ends at or before `end`, reading a window that grows from
// `first_window` bytes until the pickle fits (pickles here are small, the bytes after them may be gigabytes).
// `consumed` receives its length.
pickle::ValuePtr unpickle_at(const BinaryFile& file, uint64_t offset, uint64_t end, const std::string& context,
                             uint64_t* consumed, uint64_t first_window = 1 << 16);

PthFile::Contents open_zip(const std::shared_ptr<const BinaryFile>& file);
PthFile::Contents open_legacy(const std::shared_ptr<const BinaryFile>& file);
PthFile::Contents open_tar(const std::shared_ptr<const BinaryFile>& file);

}  // namespace tl::pth_detail
