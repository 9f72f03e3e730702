// tl convert: a published checkpoint (torchvision .pth in zip / legacy / tar layout, Keras VGG16 .h5, hub
// safetensors with torchvision or timm names) -> our safetensors checkpoint, verified against the architecture it
// claims to be, with its provenance (file name, sha256, format) and the preprocessing its weights expect.
// Layouts are converted here, once; tl classify and tl transfer load the result strictly.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "apps/args.h"
#include "apps/commands.h"
#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/model.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"
#include "loaders/transforms.h"
#include "weights/keras_h5.h"
#include "weights/manifest.h"
#include "weights/pth.h"
#include "weights/safetensors.h"
#include "weights/sha256.h"

namespace tl::app {

namespace {

enum class SourceKind { Pth, KerasH5, Safetensors };

// Identifies the container by its first bytes, never by the file name.
SourceKind detect_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TL_CHECK(in.good(), path, ": cannot open: ", std::strerror(errno));
  std::string head(1024 + 8, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  std::error_code ec;
  uint64_t file_size = std::filesystem::file_size(path, ec);
  auto starts = [&](size_t at, std::string_view magic) { return head.size() >= at + magic.size() && head.compare(at, magic.size(), magic) == 0; };
  if (starts(0, "PK\x03\x04")) return SourceKind::Pth;                 // torch.save since 1.6 (zip)
  if (starts(0, std::string_view("\x80\x02\x8a\x0a", 4))) return SourceKind::Pth;  // legacy: pickled magic number
  if (starts(257, "ustar")) return SourceKind::Pth;                     // pre-0.4 tar (ustar or pax headers)
  for (size_t at : {0, 512, 1024})  // HDF5 superblock: at 0, or after a user block of 512 * 2^k bytes
    if (starts(at, "\x89HDF\r\n\x1a\n")) return SourceKind::KerasH5;
  if (head.size() >= 9 && head[8] == '{') {  // safetensors: 8-byte little-endian header length, then JSON
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(head[i]);
    if (n >= 2 && n <= kMaxSafetensorsHeaderBytes && n + 8 <= file_size) return SourceKind::Safetensors;
  }
  std::string bytes;
  for (size_t i = 0; i < head.size() && i < 8; ++i) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(head[i]));
    bytes += str(i ? " " : "", hex);
  }
  throw Error(str(path, ": not a checkpoint tl can read (not a zip/legacy/tar .pth, HDF5 or safetensors file; it starts "
                        "with bytes ", bytes.empty() ? "(empty file)" : bytes, ")"));
}

// timm's VGG keeps torchvision's features.N but its classifier is pre_logits.fc1/fc2 (convolutions: fc1 is
// [4096,512,7,7], fc2 [4096,4096,1,1]) and head.fc. timm's own loader maps torchvision's names the other way.
std::string torchvision_name(const std::string& name) {
  static const std::pair<const char*, const char*> kTimmVgg[] = {
      {"pre_logits.fc1.", "classifier.0."}, {"pre_logits.fc2.", "classifier.3."}, {"head.fc.", "classifier.6."}};
  for (auto [from, to] : kTimmVgg)
    if (name.rfind(from, 0) == 0) return to + name.substr(std::strlen(from));
  return name;
}

ImportedCheckpoint read_safetensors(const std::string& path) {
  SafetensorsFile file = SafetensorsFile::open(path);
  ImportedCheckpoint out;
  out.format = "safetensors";
  out.metadata = file.metadata();
  for (const SafetensorsEntry& e : file.entries()) {
    std::string name = torchvision_name(e.name);
    Tensor value = file.read(e.name);
    // Convolution-shaped fully connected weights (timm) become Linear weights: a plain reshape, since
    // [out, C, H, W] flattened row-major is torchvision's [out, C*H*W] (CHW order).
    if (name != e.name && name.find(".weight") != std::string::npos && value.dim() == 4)
      value = value.reshape({value.size(0), value.numel() / value.size(0)});
    out.tensors.push_back({name, value});
  }
  return out;
}

ImportedCheckpoint read_source(SourceKind kind, const std::string& path) {
  switch (kind) {
    case SourceKind::Pth: return PthFile::open(path).read_all();
    case SourceKind::KerasH5: return read_keras_vgg16_h5(path);
    default: return read_safetensors(path);
  }
}

// Every key, dtype and shape, as the file has them, without reading tensor data where the format allows it.
void list_source(SourceKind kind, const std::string& path) {
  std::vector<std::tuple<std::string, DType, Shape>> rows;
  std::string format;
  if (kind == SourceKind::Pth) {
    PthFile file = PthFile::open(path);  // succeeds on a file whose storages are cut off
    format = file.format();
    for (const PthEntry& e : file.entries()) rows.emplace_back(e.name, e.dtype, e.shape);
  } else if (kind == SourceKind::Safetensors) {
    SafetensorsFile file = SafetensorsFile::open(path);
    format = "safetensors";
    for (const SafetensorsEntry& e : file.entries()) rows.emplace_back(e.name, e.dtype, e.shape);
  } else {
    ImportedCheckpoint c = read_keras_vgg16_h5(path);  // HDF5 is read whole; names are already torchvision's
    format = c.format;
    for (const ImportedTensor& t : c.tensors) rows.emplace_back(t.name, t.value.dtype(), t.value.shape());
  }
  int64_t elements = 0;
  std::printf("%s: %s, %zu tensors\n", path.c_str(), format.c_str(), rows.size());
  for (auto& [name, dtype, shape] : rows) {
    std::string mapped = torchvision_name(name);
    std::printf("  %-40s %-4s %s%s\n", name.c_str(), dtype_name(dtype), shape_str(shape).c_str(),
                mapped != name ? str("  -> ", mapped).c_str() : "");
    elements += shape_numel(shape);
  }
  std::printf("%zu tensors, %lld elements\n", rows.size(), static_cast<long long>(elements));
}

std::string infer_architecture(const ImportedCheckpoint& c) {
  std::set<std::string> names;
  for (const ImportedTensor& t : c.tensors) names.insert(t.name);
  if (names.count("conv1.weight") && names.count("layer4.1.conv2.weight")) return "resnet18";
  if (names.count("features.0.weight") && names.count("features.28.weight")) return "vgg16";
  return "";
}

const Tensor* find_tensor(const ImportedCheckpoint& c, const std::string& name) {
  for (const ImportedTensor& t : c.tensors)
    if (t.name == name) return &t.value;
  return nullptr;
}

// Copies the checkpoint into the model with load_checkpoint's strictness: one error listing every missing,
// unexpected and mis-shaped tensor. Only BatchNorm's num_batches_tracked may be absent (files written before
// PyTorch 0.4.1 have none; it does not affect inference): it is set to 0. Returns how many were absent.
int fill_model(Model& model, const ImportedCheckpoint& c, const std::string& path) {
  std::vector<std::pair<std::string, Tensor*>> targets;
  for (auto& p : model.named_parameters()) targets.emplace_back(p.name, &p.parameter->value);
  for (auto& b : model.named_buffers()) targets.emplace_back(b.name, &b.buffer->value);
  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> known;
  int absent_counters = 0;
  for (auto& [name, target] : targets) {
    known.insert(name);
    const Tensor* value = find_tensor(c, name);
    bool counter = name.size() > 20 && name.compare(name.size() - 20, 20, ".num_batches_tracked") == 0;
    if (!value) {
      if (counter) ++absent_counters;
      else missing.push_back(name);
    } else if (value->shape() != target->shape()) {
      mismatched.push_back(str(name, ": file ", shape_str(value->shape()), " vs ", model.architecture, " ",
                               shape_str(target->shape())));
    } else if (value->dtype() != target->dtype() && !(value->dtype() == DType::F64 && target->dtype() == DType::F32)) {
      mismatched.push_back(str(name, ": file ", dtype_name(value->dtype()), " vs ", dtype_name(target->dtype())));
    }
  }
  for (const ImportedTensor& t : c.tensors)
    if (!known.count(t.name)) unexpected.push_back(t.name);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = str(path, ": the checkpoint does not match ", model.architecture);
    auto list = [&](const char* title, const std::vector<std::string>& items) {
      if (items.empty()) return;
      msg += str("\n  ", title, " (", items.size(), "):");
      for (const std::string& item : items) msg += "\n    " + item;
    };
    list("missing from the file", missing);
    list("unexpected in the file", unexpected);
    list("mismatched", mismatched);
    throw Error(msg);
  }
  Context ctx;
  for (auto& [name, target] : targets) {
    if (const Tensor* value = find_tensor(c, name))
      target->copy_from(ctx, value->dtype() == target->dtype() ? *value : value->to_dtype(target->dtype()));
    else
      target->fill(0);
  }
  return absent_counters;
}

std::vector<std::string> read_class_names(const std::string& path, int64_t expected) {
  std::ifstream in(path);
  TL_CHECK(in.good(), path, ": cannot read class names: ", std::strerror(errno));
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    names.push_back(line);
  }
  while (!names.empty() && names.back().empty()) names.pop_back();
  TL_CHECK(static_cast<int64_t>(names.size()) == expected, path, ": ", names.size(),
           " class names (one per line), but the classifier has ", expected, " outputs");
  return names;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int run_convert(int argc, char** argv) {
  Args args("convert",
            "Convert a published checkpoint to tl's safetensors format, verified against its architecture.\n"
            "  tl convert INPUT OUTPUT         convert (.pth zip/legacy/tar, Keras VGG16 .h5, hub safetensors)\n"
            "  tl convert --list INPUT [OUTPUT] list every tensor (also of a truncated file), then convert if OUTPUT");
  args.positional("FILES", "INPUT OUTPUT, or INPUT alone with --list", true)
      .option("arch", "", "resnet18 or vgg16 (default: inferred from the tensor names)")
      .option("num-classes", "0", "expected classifier outputs; an error if the file's differ (0: inferred)")
      .option("classes", "", "file with one class name per line, stored in the checkpoint")
      .flag("list", "print every key, dtype and shape of INPUT");
  try {
    if (!args.parse(argc, argv)) return 0;
    size_t files = args.rest().size();
    TL_CHECK(files == 2 || (files == 1 && args.has("list")), "convert: expected INPUT OUTPUT (or --list INPUT), got ",
             files, " file argument(s)");
    TL_CHECK(args.get("arch").empty() || args.get("arch") == "resnet18" || args.get("arch") == "vgg16",
             "convert: --arch must be resnet18 or vgg16, got '", args.get("arch"), "'");
    TL_CHECK(args.get_int("num-classes") >= 0, "convert: --num-classes must be positive (0: inferred)");
  } catch (const Error& e) {
    std::fprintf(stderr, "tl %s\n", e.what());  // usage errors start with "convert: "
    return 2;
  }
  const std::string& input = args.rest()[0];
  SourceKind kind = detect_format(input);
  if (args.has("list")) {
    list_source(kind, input);
    if (args.rest().size() == 1) return 0;
  }
  const std::string& output = args.rest()[1];

  auto start = std::chrono::steady_clock::now();
  std::string sha = sha256_file(input);
  uint64_t input_bytes = std::filesystem::file_size(input);
  std::printf("input   %s (%llu bytes, sha256 %s)\n", input.c_str(), static_cast<unsigned long long>(input_bytes), sha.c_str());
  const ManifestEntry* known = find_checkpoint_by_sha256(sha);
  if (known) std::printf("        the manifest's %s (%s matches)\n", known->name.c_str(), known->sha256.empty() ? "sha256 prefix" : "sha256");

  ImportedCheckpoint source = read_source(kind, input);
  std::string arch = infer_architecture(source);
  TL_CHECK(!arch.empty(), input, ": neither a ResNet18 nor a VGG16 state_dict (no conv1/layer4 or features.0/.28 tensors)");
  TL_CHECK(args.get("arch").empty() || args.get("arch") == arch, input, ": --arch ", args.get("arch"),
           " but the tensor names are ", arch, "'s");
  const char* head = arch == "resnet18" ? "fc.weight" : "classifier.6.weight";
  const Tensor* classifier = find_tensor(source, head);
  bool include_top = classifier != nullptr;
  TL_CHECK(include_top || arch == "vgg16", input, ": ResNet18 checkpoint without fc.weight");
  int64_t num_classes = include_top ? classifier->size(0) : 0;
  int64_t wanted = args.get_int("num-classes");
  TL_CHECK(wanted == 0 || wanted == num_classes, input, ": --num-classes ", wanted, " but the file's classifier has ",
           include_top ? str(num_classes, " outputs") : std::string("no classifier (VGG16 without top)"));

  Model model;
  if (arch == "resnet18") build_resnet18(model, num_classes);
  else build_vgg16(model, include_top ? num_classes : 1000, include_top);
  int absent = fill_model(model, source, input);
  std::printf("format  %s, %zu tensors: %s%s, %s, %lld parameters\n", source.format.c_str(), source.tensors.size(),
              arch.c_str(), include_top ? "" : " without top",
              include_top ? str(num_classes, " classes").c_str() : "features only",
              static_cast<long long>(model.count_parameters()));
  if (absent) std::printf("note    %d num_batches_tracked counters are not in the file (pre-0.4.1 PyTorch): set to 0\n", absent);

  // Preprocessing: what the reader learned (Keras: caffe), else the manifest's, else torchvision's (.pth, hub).
  Preprocessing pre = known ? checkpoint_preprocessing(*known) : torchvision_preprocessing();
  if (source.metadata.count(kPreprocessingColor)) pre = preprocessing_from_metadata(source.metadata);
  std::map<std::string, std::string> meta = preprocessing_metadata(pre);
  for (const auto& [k, v] : source.metadata)
    if (k.rfind("keras.", 0) == 0) meta[k] = v;
  meta["include_top"] = include_top ? "true" : "false";
  meta["num_classes"] = std::to_string(num_classes);
  meta["source.file"] = std::filesystem::path(input).filename().string();
  meta["source.sha256"] = sha;
  meta["source.format"] = source.format;
  if (known) meta["source.manifest"] = known->name;
  model.metadata.clear();
  if (!args.get("classes").empty()) {
    TL_CHECK(include_top, "--classes given, but the checkpoint has no classifier");
    model.class_names = read_class_names(args.get("classes"), num_classes);
    std::printf("classes %zu names from %s\n", model.class_names.size(), args.get("classes").c_str());
  } else if (include_top) {
    std::printf("classes none stored (pass --classes FILE, one name per line); tl classify will print indices\n");
  }
  save_checkpoint(output, model, meta);
  std::printf("wrote   %s in %.2f s (preprocessing %s, resize %d, crop %d)\n", output.c_str(), seconds_since(start),
              pre.bgr ? "BGR 0..255 minus mean" : "RGB [0,1] mean/std", pre.resize, pre.crop);
  return 0;
}

}  // namespace tl::app
