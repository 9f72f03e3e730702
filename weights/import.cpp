#include "weights/import.h"

#include <fnmatch.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string_view>

#include "engine/context.h"
#include "engine/error.h"
#include "loaders/transforms.h"
#include "weights/keras_h5.h"
#include "weights/manifest.h"
#include "weights/pth.h"
#include "weights/safetensors.h"
#include "weights/sha256.h"

namespace tl {

namespace {

// timm's VGG keeps torchvision's features.N but names its classifier pre_logits.fc1/fc2 (as convolutions) and
// head.fc; everything else already has torchvision's names.
std::string torchvision_name(const std::string& name) {
  static const std::pair<const char*, const char*> kTimmVgg[] = {
      {"pre_logits.fc1.", "classifier.0."}, {"pre_logits.fc2.", "classifier.3."}, {"head.fc.", "classifier.6."}};
  for (auto [from, to] : kTimmVgg)
    if (name.rfind(from, 0) == 0) return to + name.substr(std::strlen(from));
  return name;
}

ImportedCheckpoint read_safetensors_checkpoint(const std::string& path) {
  SafetensorsFile file = SafetensorsFile::open(path);
  ImportedCheckpoint out;
  out.format = "safetensors";
  out.metadata = file.metadata();
  for (const SafetensorsEntry& e : file.entries()) {
    std::string name = torchvision_name(e.name);
    Tensor value = file.read(e.name);
    // timm's convolution-shaped fully connected weights [out, C, H, W] are torchvision's [out, C*H*W] (CHW order).
    if (name != e.name && value.dim() == 4) value = value.reshape({value.size(0), value.numel() / value.size(0)});
    out.tensors.push_back({name, value});
  }
  return out;
}

const ImportedTensor* find(const ImportedCheckpoint& c, const std::string& name) {
  for (const ImportedTensor& t : c.tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::string infer_architecture(const ImportedCheckpoint& c) {
  if (find(c, "conv1.weight") && find(c, "layer4.1.conv2.weight")) return "resnet18";
  if (find(c, "features.0.weight") && find(c, "features.28.weight")) return "vgg16";
  return "";
}

bool matches_any(const std::string& name, const std::vector<std::string>& globs) {
  for (const std::string& g : globs)
    if (fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

bool is_batch_counter(const std::string& name) {
  static const std::string kSuffix = ".num_batches_tracked";
  return name.size() > kSuffix.size() && name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
}

}  // namespace

std::string detect_checkpoint_container(const std::string& path) {
  std::error_code ec;
  TL_CHECK(std::filesystem::is_regular_file(path, ec), path, ": no such checkpoint file");
  std::ifstream in(path, std::ios::binary);
  TL_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  std::string head(1024 + 8, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  uint64_t file_size = std::filesystem::file_size(path, ec);
  auto starts = [&](size_t at, std::string_view magic) {
    return head.size() >= at + magic.size() && head.compare(at, magic.size(), magic) == 0;
  };
  if (starts(0, "PK\x03\x04")) return "pth";                               // torch.save since 1.6 (zip)
  if (starts(0, std::string_view("\x80\x02\x8a\x0a", 4))) return "pth";   // legacy: the pickled magic number
  if (starts(257, "ustar")) return "pth";                                  // before 0.4: a tar
  for (size_t at : {0, 512, 1024})  // the HDF5 superblock: at 0 or after a user block of 512 * 2^k bytes
    if (starts(at, "\x89HDF\r\n\x1a\n")) return "keras-h5";
  if (head.size() >= 9 && head[8] == '{') {  // safetensors: 8-byte little-endian header length, then JSON
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(head[i]);
    if (n >= 2 && n <= kMaxSafetensorsHeaderBytes && n + 8 <= file_size) return "safetensors";
  }
  std::string bytes;
  for (size_t i = 0; i < head.size() && i < 8; ++i) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(head[i]));
    bytes += str(i ? " " : "", hex);
  }
  throw Error(str(path, ": not a checkpoint tl can read (not a zip/legacy/tar .pth, Keras .h5 or safetensors file; "
                        "it starts with bytes ", bytes.empty() ? "(empty file)" : bytes, ")"));
}

ImportedCheckpoint import_checkpoint(const std::string& path) {
  std::string container = detect_checkpoint_container(path);
  ImportedCheckpoint c;
  if (container == "pth") c = PthFile::open(path).read_all();
  else if (container == "keras-h5") c = read_keras_vgg16_h5(path);
  else c = read_safetensors_checkpoint(path);
  TL_CHECK(!c.tensors.empty(), path, ": the checkpoint holds no tensors");

  c.metadata["source.format"] = c.format;
  c.metadata["source.file"] = std::filesystem::path(path).filename().string();
  std::string inferred = infer_architecture(c);
  if (!c.metadata.count("architecture") && !inferred.empty()) c.metadata["architecture"] = inferred;
  const std::string arch = c.metadata.count("architecture") ? c.metadata.at("architecture") : "";
  const char* classifier = arch == "resnet18" ? "fc.weight" : arch == "vgg16" ? "classifier.6.weight" : nullptr;
  if (classifier) {
    const ImportedTensor* top = find(c, classifier);
    if (!c.metadata.count("include_top")) c.metadata["include_top"] = top ? "true" : "false";
    if (top && top->value.dim() == 2) c.metadata["num_classes"] = std::to_string(top->value.size(0));
  }
  if (container == "pth" && !c.metadata.count(kPreprocessingColor)) {
    // A .pth says nothing about its inputs: torchvision's convention, unless the manifest knows the file.
    const ManifestEntry* known = find_checkpoint_by_sha256(sha256_file(path));
    Preprocessing p = known ? checkpoint_preprocessing(*known) : torchvision_preprocessing();
    for (auto& [k, v] : preprocessing_metadata(p)) c.metadata[k] = v;
    if (known) c.metadata["source.manifest"] = known->name;
  }
  return c;
}

void load_pretrained(Model& model, const ImportedCheckpoint& checkpoint, const std::vector<std::string>& allow_missing_globs,
                     bool skip_head_mismatch, PretrainedLoadReport* report) {
  std::string source = checkpoint.metadata.count("source.file") ? checkpoint.metadata.at("source.file") : checkpoint.format;
  std::map<std::string, const Tensor*> file;
  for (const ImportedTensor& t : checkpoint.tensors) file[t.name] = &t.value;

  std::vector<std::pair<std::string, Tensor*>> targets;
  for (auto& p : model.named_parameters()) targets.emplace_back(p.name, &p.parameter->value);
  for (auto& b : model.named_buffers()) targets.emplace_back(b.name, &b.buffer->value);

  PretrainedLoadReport r;
  std::vector<std::string> missing, unexpected, mismatched;
  std::vector<std::pair<Tensor*, const Tensor*>> copies;
  std::vector<Tensor*> zeroed_counters;
  std::set<std::string> known;
  for (auto& [name, target] : targets) {
    known.insert(name);
    bool head = matches_any(name, allow_missing_globs);
    auto it = file.find(name);
    if (it == file.end()) {
      if (head) r.head_kept.push_back(name);
      else if (is_batch_counter(name)) zeroed_counters.push_back(target);
      else missing.push_back(name);
      continue;
    }
    const Tensor& value = *it->second;
    bool dtype_ok = value.dtype() == target->dtype() || (value.dtype() == DType::F64 && target->dtype() == DType::F32);
    if (value.shape() != target->shape() || !dtype_ok) {
      if (head && skip_head_mismatch) {
        r.head_kept.push_back(name);
      } else {
        mismatched.push_back(str(name, ": checkpoint ", dtype_name(value.dtype()), shape_str(value.shape()), " vs model ",
                                 dtype_name(target->dtype()), shape_str(target->shape())));
      }
      continue;
    }
    copies.emplace_back(target, &value);
  }
  for (const ImportedTensor& t : checkpoint.tensors) {
    if (known.count(t.name)) continue;
    if (matches_any(t.name, allow_missing_globs)) r.ignored.push_back(t.name);
    else unexpected.push_back(t.name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = str(source, ": the weights do not fit this ", model.architecture.empty() ? "model" : model.architecture);
    auto list = [&](const char* title, const std::vector<std::string>& items) {
      if (items.empty()) return;
      msg += str("\n  ", title, " (", items.size(), "):");
      for (const std::string& item : items) msg += "\n    " + item;
    };
    list("missing from the checkpoint", missing);
    list("unexpected in the checkpoint", unexpected);
    list("mismatched", mismatched);
    throw Error(msg);
  }
  Context ctx;
  for (auto& [target, value] : copies)
    target->copy_from(ctx, value->dtype() == target->dtype() ? *value : value->to_dtype(target->dtype()));
  for (Tensor* counter : zeroed_counters) counter->fill(0);
  r.loaded = static_cast<int>(copies.size());
  r.absent_counters = static_cast<int>(zeroed_counters.size());
  if (report) *report = std::move(r);
}

}  // namespace tl
