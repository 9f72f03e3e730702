#pragma once
// PyTorch checkpoints (.pth / .pt holding a state_dict) in the three layouts torch.load reads, without Python:
//   "pth-zip"     torch.save since 1.6: a zip of <archive>/data.pkl and one stored entry per storage,
//                 <archive>/data/<key> (weights/zip_reader.h; also zips cut short, without a central directory);
//   "pth-legacy"  torch.save(..., _use_new_zipfile_serialization=False): pickles back to back (magic number,
//                 protocol version 1001, sys_info, the state_dict, the sorted storage keys), then each storage as
//                 an 8-byte little-endian element count and its raw bytes;
//   "pth-tar"     torch.save before 0.4 (e.g. torchvision's 2017 resnet18-5c106cde.pth): a tar of sys_info, pickle
//                 (the state_dict, whose persistent ids are tensor keys), tensors (per tensor: key, storage key,
//                 shape, strides, offset) and storages (per storage: key, type, element count and bytes)
//                 (weights/tar_reader.h).
// Pickles go through the restricted unpickler (weights/pickle.h), which executes nothing and refuses any global
// a state_dict does not need. The state_dict must be a dict of str -> tensor.
//
// Element types: Float -> F32, Double -> F64, Long -> I64; Half and BFloat16 are widened to F32 and Int, Short,
// Char, Byte, Bool to I64 on read, exactly (a tensor of another storage type is refused at open()).
// open() parses the container and the pickles and checks every tensor's shape, strides and offset against its
// storage, but reads no tensor data; it succeeds when only storage bytes are cut off (an interrupted download), so
// the keys and shapes of a truncated file can be listed. read() returns a contiguous CPU tensor; zip entries are
// CRC-checked. Every error is a tl::Error starting with the file's path.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "weights/binary_file.h"
#include "weights/imported.h"

namespace tl {

struct PthEntry {
  std::string name;          // state_dict key
  std::string storage_type;  // "FloatStorage", ...
  DType dtype;               // what read() returns: F32 (Float, Half, BFloat16), F64 (Double), I64 (integer types)
  Shape shape;
  std::vector<int64_t> stride;  // in elements of the storage
  int64_t storage_offset;       // in elements of the storage
  std::string storage_key;
};

// Where one storage's bytes lie in the file (internal to the readers; exposed for the format parsers).
struct PthStorage {
  std::string type;                // "FloatStorage", ...
  uint64_t element_size = 0;       // bytes per element in the file
  std::string where;               // for messages: "zip entry 'archive/data/3'", "member 'storages'", ...
  uint64_t file_offset = 0;        // first byte of the storage (a storage view: of its part of the root storage)
  bool size_known = false;         // false: the file ends before it says how many elements the storage has
  uint64_t bytes = 0;              // the storage's size in bytes, when size_known
  uint64_t present = 0;            // bytes of it the file holds (== bytes unless the file is cut)
  bool has_crc = false;            // a zip entry: its CRC-32 covers bytes [file_offset, file_offset + bytes)
  uint32_t crc32 = 0;
};

class PthFile {
 public:
  // Parses the container (zip / legacy / tar) and the pickle. Succeeds when only storage bytes are cut off, so that
  // `tl convert --list` can show a truncated file's keys and shapes; fails when the pickle itself is unreadable.
  static PthFile open(const std::string& path);
  const std::string& path() const { return path_; }
  const std::string& format() const { return format_; }       // "pth-zip", "pth-legacy", "pth-tar"
  const std::vector<PthEntry>& entries() const { return entries_; }  // state_dict order
  const PthEntry* find(const std::string& name) const;
  // CPU tensor, contiguous. Truncation: "<path>: tensor 'layer4.0.conv1.weight' (storage '17') is truncated: needs
  // N bytes, the file holds M" (N: the bytes of its storage up to its last element; M: the bytes of that storage
  // in the file).
  Tensor read(const std::string& name) const;
  ImportedCheckpoint read_all() const;  // format "pth-zip"/..., tensors in state_dict order

  // For the format parsers (weights/pth_*.cpp): a file's parsed contents.
  struct Contents {
    std::string format;
    std::vector<PthEntry> entries;
    std::map<std::string, PthStorage> storages;  // by storage key
  };

 private:
  Tensor read_entry(const PthEntry& entry, const std::vector<unsigned char>* storage_bytes) const;
  std::vector<unsigned char> read_storage(const PthEntry& entry, uint64_t bytes) const;

  std::string path_, format_;
  std::shared_ptr<const BinaryFile> file_;
  std::vector<PthEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, PthStorage> storages_;
};

}  // namespace tl
