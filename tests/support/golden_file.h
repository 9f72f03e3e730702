#pragma once
// The golden files written by tests/golden/make_golden.py (which documents every tensor in them).
#include <string>

#include "engine/tensor.h"
#include "weights/safetensors.h"

namespace tl::test {

struct GoldenFile {
  SafetensorsFile file;
  explicit GoldenFile(const std::string& name);  // a file in tests/golden/
  Tensor get(const std::string& name) const { return file.read(name); }
  // Throws naming the file when the key is missing.
  const std::string& meta(const std::string& key) const;
};

// The two real images both sides ran: F32 [2,3,224,224], already through torchvision's eval transforms.
Tensor golden_images();
// The labels in the file's metadata, as I64 [N].
Tensor golden_labels(const GoldenFile& golden);

}  // namespace tl::test
