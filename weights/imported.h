#pragma once
// A checkpoint read from another framework's format (.pth, Keras .h5, hub safetensors), as named CPU tensors in
// file order, already renamed and re-laid-out to torchvision's conventions where the reader knows how.
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace tl {

struct ImportedTensor {
  std::string name;
  Tensor value;
};

struct ImportedCheckpoint {
  std::string format;  // "pth-zip", "pth-legacy", "pth-tar", "keras-h5", "safetensors"
  std::vector<ImportedTensor> tensors;
  std::map<std::string, std::string> metadata;  // what the reader learned (architecture, preprocessing, ...)
};

}  // namespace tl
