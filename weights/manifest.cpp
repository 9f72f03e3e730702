#include "weights/manifest.h"

#include "engine/error.h"

namespace tl {

namespace {

const char* const kPyTorch = "https://download.pytorch.org/models/";
const char* const kKeras = "https://github.com/fchollet/deep-learning-models/releases/download/v0.1/";
const char* const kHub = "https://huggingface.co/timm/";

std::vector<ManifestEntry> make_table() {
  std::vector<ManifestEntry> t;
  // torchvision ResNet18_Weights.IMAGENET1K_V1 (zip layout, 122 entries with num_batches_tracked); published
  // acc@1 69.758. Only the hash prefix in its name is known here.
  t.push_back({"resnet18-f37072fd", "resnet18-f37072fd.pth", std::string(kPyTorch) + "resnet18-f37072fd.pth", "",
               "f37072fd", "", 0, "pth-zip", "resnet18", 1000, true, "torchvision"});
  // The 2017 file (tar layout, 102 keys, no num_batches_tracked); hash and size from its Git-LFS pointer.
  t.push_back({"resnet18-5c106cde", "resnet18-5c106cde.pth", std::string(kPyTorch) + "resnet18-5c106cde.pth",
               "5c106cde386e87d4033832f2996f5493238eda96ccf559d1d62760c4de0613f8", "5c106cde", "", 46827520, "pth-tar",
               "resnet18", 1000, true, "torchvision"});
  t.push_back({"vgg16-397923af", "vgg16-397923af.pth", std::string(kPyTorch) + "vgg16-397923af.pth", "", "397923af", "",
               0, "pth", "vgg16", 1000, true, "torchvision"});
  // Keras applications VGG16 (different weights from torchvision's, caffe preprocessing); md5 from keras get_file.
  t.push_back({"keras-vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
               std::string(kKeras) + "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "", "",
               "64373286793e3c8b2b4e3219cbf3544b", 0, "keras-h5", "vgg16", 1000, true, "caffe"});
  t.push_back({"keras-vgg16-notop", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               std::string(kKeras) + "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "", "",
               "6d6bbae143d832006294945121d1f1fc", 0, "keras-h5", "vgg16", 0, false, "caffe"});
  // timm's copies of the torchvision weights on the Hugging Face hub (timm names; see apps/convert.cpp).
  t.push_back({"timm-resnet18.tv_in1k", "resnet18.tv_in1k.safetensors",
               std::string(kHub) + "resnet18.tv_in1k/resolve/main/model.safetensors", "", "", "", 0, "safetensors",
               "resnet18", 1000, true, "torchvision"});
  t.push_back({"timm-vgg16.tv_in1k", "vgg16.tv_in1k.safetensors",
               std::string(kHub) + "vgg16.tv_in1k/resolve/main/model.safetensors", "", "", "", 0, "safetensors", "vgg16",
               1000, true, "torchvision"});
  // This project's stand-in backbone (shared/data/weights, README section 3a): not downloadable.
  t.push_back({"resnet18-miniimagenet", "resnet18-miniimagenet.pth", "",
               "d593f2368c6f11f73866c20f8d48ca4ca3c52e5b4b0e3fffc6fd131e0e483988", "d593f236", "", 44989653, "pth-zip",
               "resnet18", 100, true, "torchvision"});
  return t;
}

}  // namespace

const std::vector<ManifestEntry>& official_checkpoints() {
  static const std::vector<ManifestEntry> table = make_table();
  return table;
}

const ManifestEntry* find_checkpoint(const std::string& name) {
  for (const ManifestEntry& e : official_checkpoints())
    if (e.name == name) return &e;
  return nullptr;
}

const ManifestEntry* find_checkpoint_by_sha256(const std::string& sha256) {
  for (const ManifestEntry& e : official_checkpoints())
    if (!e.sha256.empty() && e.sha256 == sha256) return &e;
  for (const ManifestEntry& e : official_checkpoints())
    if (e.sha256.empty() && !e.sha256_prefix.empty() && sha256.rfind(e.sha256_prefix, 0) == 0) return &e;
  return nullptr;
}

Preprocessing checkpoint_preprocessing(const ManifestEntry& entry) {
  if (entry.preprocessing == "torchvision") return torchvision_preprocessing();
  if (entry.preprocessing == "caffe") return keras_caffe_preprocessing();
  throw Error(str("manifest entry ", entry.name, ": unknown preprocessing '", entry.preprocessing, "'"));
}

}  // namespace tl
