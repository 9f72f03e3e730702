#pragma once
// The official checkpoints tl can convert: where each is published, what identifies it (sha256 where known, the
// hash prefix its file name promises, Keras' md5), its layout and the preprocessing its weights expect. The same
// table is weights/manifest.tsv, which weights/fetch.sh reads; a test keeps the two equal.
// Unknown values stay empty/0: a hash is recorded only when it was verified, never guessed.
#include <cstdint>
#include <string>
#include <vector>

#include "loaders/transforms.h"

namespace tl {

struct ManifestEntry {
  std::string name;           // "resnet18-f37072fd", "keras-vgg16-notop", ...
  std::string file;           // the published file name
  std::string url;            // "" when not downloadable (a local file of this project)
  std::string sha256;         // 64 lowercase hex digits, "" when unknown
  std::string sha256_prefix;  // what the file name promises (torchvision), "" when none
  std::string md5;            // Keras get_file's md5, "" when unknown
  int64_t size = 0;           // bytes, 0 when unknown
  std::string format;         // "pth-zip", "pth-tar", "pth" (layout unknown), "keras-h5", "safetensors"
  std::string architecture;   // "resnet18" | "vgg16"
  int64_t num_classes = 0;    // 0 without a classifier
  bool include_top = true;
  std::string preprocessing;  // "torchvision" | "caffe"
};

const std::vector<ManifestEntry>& official_checkpoints();
const ManifestEntry* find_checkpoint(const std::string& name);
// The entry whose full sha256 equals `sha256`, else one whose sha256_prefix starts it, else nullptr.
const ManifestEntry* find_checkpoint_by_sha256(const std::string& sha256);
Preprocessing checkpoint_preprocessing(const ManifestEntry& entry);

}  // namespace tl
