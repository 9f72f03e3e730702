// tl convert: a published checkpoint (torchvision .pth in zip / legacy / tar layout, Keras VGG16 .h5, hub
// safetensors with torchvision or timm names) -> our safetensors checkpoint, verified against the architecture it
// claims to be, with its provenance (file name, sha256, format) and the preprocessing its weights expect.
// weights/import.h recognises and reads the file and converts layouts and names (once, here, never at load time);
// this command checks the result against the architecture, adds provenance and preprocessing and writes it.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "apps/args.h"
#include "apps/commands.h"
#include "engine/checkpoint.h"
#include "engine/model.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"
#include "loaders/transforms.h"
#include "weights/import.h"
#include "weights/keras_h5.h"
#include "weights/manifest.h"
#include "weights/pth.h"
#include "weights/safetensors.h"
#include "weights/sha256.h"

namespace tl::app {

namespace {

// Every key, dtype and shape, as the file names them, without reading tensor data where the format allows it (a
// .pth whose storages are cut off still lists).
void list_source(const std::string& container, const std::string& path) {
  std::vector<std::tuple<std::string, DType, Shape>> rows;
  std::string format;
  if (container == "pth") {
    PthFile file = PthFile::open(path);
    format = file.format();
    for (const PthEntry& e : file.entries()) rows.emplace_back(e.name, e.dtype, e.shape);
  } else if (container == "safetensors") {
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
    std::printf("  %-40s %-4s %s\n", name.c_str(), dtype_name(dtype), shape_str(shape).c_str());
    elements += shape_numel(shape);
  }
  std::printf("%zu tensors, %lld elements\n", rows.size(), static_cast<long long>(elements));
}

std::string metadata_or(const ImportedCheckpoint& c, const std::string& key, const std::string& fallback) {
  auto it = c.metadata.find(key);
  return it == c.metadata.end() ? fallback : it->second;
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
  std::string container = detect_checkpoint_container(input);
  if (args.has("list")) {
    list_source(container, input);
    if (args.rest().size() == 1) return 0;
  }
  const std::string& output = args.rest()[1];

  auto start = std::chrono::steady_clock::now();
  std::string sha = sha256_file(input);
  uint64_t input_bytes = std::filesystem::file_size(input);
  std::printf("input   %s (%llu bytes, sha256 %s)\n", input.c_str(), static_cast<unsigned long long>(input_bytes), sha.c_str());
  const ManifestEntry* known = find_checkpoint_by_sha256(sha);
  if (known) std::printf("        the manifest's %s (%s matches)\n", known->name.c_str(), known->sha256.empty() ? "sha256 prefix" : "sha256");

  // Read, with torchvision's names and layouts (weights/import.h: .pth, Keras .h5, hub safetensors / timm names).
  ImportedCheckpoint source = import_checkpoint(input);
  std::string arch = metadata_or(source, "architecture", "");
  TL_CHECK(arch == "resnet18" || arch == "vgg16", input, ": neither a ResNet18 nor a VGG16 state_dict (",
           arch.empty() ? std::string("no conv1/layer4 or features.0/.28 tensors") : "architecture '" + arch + "'", ")");
  TL_CHECK(args.get("arch").empty() || args.get("arch") == arch, input, ": --arch ", args.get("arch"),
           " but the checkpoint is a ", arch);
  bool include_top = metadata_or(source, "include_top", "") != "false";
  TL_CHECK(include_top || arch == "vgg16", input, ": ResNet18 checkpoint without fc.weight");
  int64_t num_classes = include_top ? std::stoll(metadata_or(source, "num_classes", "0")) : 0;
  TL_CHECK(!include_top || num_classes > 0, input, ": cannot tell the classifier's size");
  int64_t wanted = args.get_int("num-classes");
  TL_CHECK(wanted == 0 || wanted == num_classes, input, ": --num-classes ", wanted, " but the file's classifier has ",
           include_top ? str(num_classes, " outputs") : std::string("no classifier (VGG16 without top)"));

  // Verified against the architecture: strict, as load_state_dict(strict=True); only BatchNorm's
  // num_batches_tracked may be absent (pre-0.4.1 PyTorch files), set to 0.
  Model model;
  if (arch == "resnet18") build_resnet18(model, num_classes);
  else build_vgg16(model, include_top ? num_classes : 1000, include_top);
  PretrainedLoadReport report;
  load_pretrained(model, source, {}, false, &report);
  std::printf("format  %s, %zu tensors: %s%s, %s, %lld parameters\n", source.format.c_str(), source.tensors.size(),
              arch.c_str(), include_top ? "" : " without top",
              include_top ? str(num_classes, " classes").c_str() : "features only",
              static_cast<long long>(model.count_parameters()));
  if (report.absent_counters)
    std::printf("note    %d num_batches_tracked counters are not in the file (pre-0.4.1 PyTorch): set to 0\n",
                report.absent_counters);

  // Preprocessing: what the file or its reader says (Keras: caffe; .pth: the manifest's or torchvision's), else
  // the manifest's, else torchvision's (hub safetensors).
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
