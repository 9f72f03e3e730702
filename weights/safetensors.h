#pragma once
// Our checkpoint format: safetensors (https://huggingface.co/docs/safetensors). An 8-byte
// little-endian header length N, N bytes of a UTF-8 JSON object mapping tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section that follows
// the header) plus an optional "__metadata__" object of strings, then the raw little-endian data.
//
// Files are untrusted. open() checks everything before any tensor is read, as the reference
// implementation does: header length against the file and a 100 MB cap, strict JSON, every dtype,
// shape (overflow-checked) and offset pair, and that the tensors tile the data section exactly (no
// overlap, no hole, nothing past the end). Every error is a tl::Error starting with the file's path.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace tl {

// The reference implementation's limit; real headers are a few MB at most.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
// PyTorch's limit on tensor rank; a longer shape is a corrupt header.
constexpr size_t kMaxSafetensorsRank = 64;

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // byte range within the data section
};

class SafetensorsFile {
 public:
  // Reads and validates the header; throws tl::Error "path: ...".
  static SafetensorsFile open(const std::string& path);

  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // in header order
  const SafetensorsEntry* find(const std::string& name) const;
  // A fresh CPU tensor with the entry's dtype and shape; errors name the file and the tensor.
  Tensor read(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

  // Validates a header already in memory (what open() does after reading the file); `data_bytes` is
  // the size of the data section. Exposed for tests and the fuzz target; errors start with `path`.
  static SafetensorsFile from_header(const std::string& path, std::string_view header, uint64_t data_bytes);

 private:
  std::string path_;
  uint64_t data_start_ = 0;  // file offset of the data section: 8 + header length
  uint64_t data_bytes_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (CPU, in the given order, names unique) and metadata to `path` through a temporary
// file `path.tmp-<pid>` that is fsynced and renamed over `path`: a crash never leaves a half-written
// checkpoint under the real name. Throws tl::Error "path: ..." and leaves no temporary behind.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace tl
