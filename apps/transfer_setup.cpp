#include "apps/transfer_setup.h"

#include <fnmatch.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "layers/models/heads.h"
#include "layers/models/resnet18.h"
#include "layers/models/vgg16.h"
#include "weights/import.h"
#include "weights/safetensors.h"
#include "weights/sha256.h"

namespace tl::app {

namespace {

std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string get_or(const std::map<std::string, std::string>& m, const std::string& key, const std::string& fallback) {
  auto it = m.find(key);
  return it == m.end() ? fallback : it->second;
}

int64_t parse_count(const std::string& text, const std::string& what) {
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  TL_CHECK(!text.empty() && end && *end == '\0' && v > 0, what, " must be a positive integer, got '", text, "'");
  return v;
}

void build_architecture(Model& model, const std::string& arch, int64_t num_classes, bool include_top) {
  if (arch == "resnet18") build_resnet18(model, num_classes);
  else if (arch == "vgg16") build_vgg16(model, num_classes, include_top);
  else throw Error(str("unknown architecture '", arch, "' (tl transfer knows resnet18 and vgg16)"));
}

std::string fmt_count(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

TransferModel build_transfer_model(Model& model, const ModelOptions& o, const std::vector<std::string>& classes, Rng& rng) {
  TL_CHECK(classes.size() >= 2, "transfer needs at least two classes, got ", classes.size());
  TL_CHECK(!o.binary || classes.size() == 2, "--binary needs exactly two classes, the data has ", classes.size());
  TL_CHECK(o.image_size >= 32, "--image-size must be at least 32, got ", o.image_size);
  TransferModel tm;
  ImportedCheckpoint ck;
  std::string arch = o.architecture;
  bool include_top = true;
  int64_t base_classes = 1000;
  if (!o.weights.empty()) {
    ck = import_checkpoint(o.weights);
    std::string file_arch = get_or(ck.metadata, "architecture", "");
    TL_CHECK(!file_arch.empty(), o.weights, ": neither a ResNet18 nor a VGG16 checkpoint (no conv1/layer4 or features.* tensors)");
    TL_CHECK(arch.empty() || arch == file_arch, "--model ", arch, " but ", o.weights, " holds ", file_arch, " weights");
    arch = file_arch;
    include_top = get_or(ck.metadata, "include_top", "true") != "false";
    if (ck.metadata.count("num_classes")) base_classes = parse_count(ck.metadata.at("num_classes"), "num_classes");
    tm.pretrained = true;
  }
  if (arch.empty()) arch = "resnet18";
  build_architecture(model, arch, base_classes, include_top);
  if (!tm.pretrained) model.reset_parameters(rng);

  int64_t outputs = o.binary ? 1 : static_cast<int64_t>(classes.size());
  HeadSpec spec = parse_head_spec(o.head_spec, outputs);
  tm.head = add_head(model, spec, rng, {3, o.image_size, o.image_size});
  tm.top_block = arch == "resnet18" ? "layer4" : "features.24";

  if (tm.pretrained) {
    PretrainedLoadReport report;
    load_pretrained(model, ck, {tm.head, tm.head + ".*"}, true, &report);
    tm.weights_summary = str(o.weights, " (", ck.format, "): ", report.loaded, " tensors loaded into ", arch,
                             include_top ? "" : " without top", "; new head '", tm.head, "' (",
                             report.head_kept.size(), " tensors freshly initialised)");
    if (report.absent_counters)
      tm.weights_summary += str("; ", report.absent_counters, " num_batches_tracked counters absent, set to 0");
  } else {
    tm.weights_summary = str("warning: no --weights: ", arch, " starts from a random initialisation (seed ", o.seed,
                             "); expect far lower accuracy than from pretrained weights");
  }

  // Preprocessing: the weights' colour, scale, mean and std; the geometry of this run.
  tm.preprocessing = ck.metadata.count(kPreprocessingColor) ? preprocessing_from_metadata(ck.metadata)
                                                             : torchvision_preprocessing();
  if (o.resize == ResizeMode::ShorterThenCrop) {
    tm.preprocessing.resize = static_cast<int>(std::lround(o.image_size * 256.0 / 224.0));
  } else {
    tm.preprocessing.resize = o.image_size;
  }
  tm.preprocessing.crop = o.image_size;
  for (auto& [k, v] : preprocessing_metadata(tm.preprocessing)) model.metadata[k] = v;
  model.class_names = classes;
  model.metadata["head.name"] = tm.head;
  model.metadata["head.spec"] = format_head_spec(spec);
  model.metadata["head.outputs"] = std::to_string(outputs);
  model.metadata["head.binary"] = o.binary ? "true" : "false";
  model.metadata["base.num_classes"] = std::to_string(base_classes);
  model.metadata["include_top"] = include_top ? "true" : "false";
  model.metadata["transfer.image_size"] = std::to_string(o.image_size);
  model.metadata["transfer.resize"] = o.resize == ResizeMode::Exact ? "exact" : "shorter";
  if (tm.pretrained) {
    model.metadata["pretrained.file"] = get_or(ck.metadata, "source.file", o.weights);
    model.metadata["pretrained.format"] = ck.format;
  }
  return tm;
}

void load_saved_model(const std::string& path, Model& model) {
  std::map<std::string, std::string> meta = SafetensorsFile::open(path).metadata();
  std::string arch = get_or(meta, kArchitectureKey, "");
  TL_CHECK(!arch.empty(), path, ": no \"architecture\" in the metadata (not written by tl transfer or tl convert?)");
  if (meta.count("head.spec")) {
    int64_t outputs = parse_count(get_or(meta, "head.outputs", ""), path + ": head.outputs");
    int64_t base_classes = parse_count(get_or(meta, "base.num_classes", "1000"), path + ": base.num_classes");
    int64_t size = parse_count(get_or(meta, "transfer.image_size", "224"), path + ": transfer.image_size");
    build_architecture(model, arch, base_classes, get_or(meta, "include_top", "true") != "false");
    Rng rng(0);  // the head's initial values are overwritten by the load
    add_head(model, parse_head_spec(meta.at("head.spec"), outputs), rng, {3, size, size});
  } else {
    SafetensorsFile file = SafetensorsFile::open(path);
    const char* head = arch == "resnet18" ? "fc.weight" : "classifier.6.weight";
    const SafetensorsEntry* classifier = file.find(head);
    TL_CHECK(classifier != nullptr && classifier->shape.size() == 2, path, ": ", arch, " checkpoint without a classifier (",
             head, "): nothing to predict with");
    build_architecture(model, arch, classifier->shape[0], true);
  }
  load_checkpoint(path, model);
}

Tensor EvalGeometry::operator()(const Image& image) const {
  return size > 0 ? eval_transform(image, preprocessing, size, resize) : preprocess(image, preprocessing);
}

EvalGeometry eval_geometry_from_metadata(const std::map<std::string, std::string>& metadata) {
  EvalGeometry g;
  g.preprocessing = preprocessing_from_metadata(metadata);
  if (metadata.count("transfer.image_size")) {
    g.size = static_cast<int>(parse_count(metadata.at("transfer.image_size"), "transfer.image_size"));
    g.resize = get_or(metadata, "transfer.resize", "shorter") == "exact" ? ResizeMode::Exact : ResizeMode::ShorterThenCrop;
  } else {
    g.size = 0;  // a converted checkpoint: its own resize and crop
  }
  return g;
}

std::string torchvision_layer_name(const std::string& name) {
  static const std::map<std::string, std::string> kKerasVgg16 = {
      {"block1_conv1", "features.0"},  {"block1_conv2", "features.2"},  {"block2_conv1", "features.5"},
      {"block2_conv2", "features.7"},  {"block3_conv1", "features.10"}, {"block3_conv2", "features.12"},
      {"block3_conv3", "features.14"}, {"block4_conv1", "features.17"}, {"block4_conv2", "features.19"},
      {"block4_conv3", "features.21"}, {"block5_conv1", "features.24"}, {"block5_conv2", "features.26"},
      {"block5_conv3", "features.28"}, {"fc1", "classifier.0"},         {"fc2", "classifier.3"},
      {"predictions", "classifier.6"}};
  auto it = kKerasVgg16.find(name);
  return it == kKerasVgg16.end() ? name : it->second;
}

void train_head_only(Model& model, const TransferModel& tm) {
  for (auto& p : model.named_parameters()) p.parameter->set_trainable(false);
  model.set_trainable(tm.head + ".*", true);
}

void select_trainable(Model& model, const TransferModel& tm, const std::string& train_globs,
                      const std::string& unfreeze_from, int train_last) {
  int given = !train_globs.empty() + !unfreeze_from.empty() + (train_last > 0);
  TL_CHECK(given <= 1, "give at most one of --train, --unfreeze-from and --train-last");
  TL_CHECK(train_last >= 0, "--train-last must be positive, got ", train_last);
  if (!train_globs.empty()) {
    for (auto& p : model.named_parameters()) p.parameter->set_trainable(false);
    std::stringstream items(train_globs);
    for (std::string glob; std::getline(items, glob, ',');) {
      if (glob.empty()) continue;
      int matched = 0;
      for (auto& p : model.named_parameters()) {
        if (fnmatch(glob.c_str(), p.name.c_str(), 0) == 0) {
          p.parameter->set_trainable(true);
          ++matched;
        }
      }
      TL_CHECK(matched > 0, "--train: pattern '", glob, "' matches no parameter of this ", model.architecture,
               " (names look like layer4.0.conv1.weight, features.24.weight, ", tm.head, ".weight)");
    }
  } else if (train_last > 0) {
    std::vector<Layer*> with_params;
    model.visit_layers([&](const std::string&, Layer& layer) {
      if (!layer.local_parameters().empty()) with_params.push_back(&layer);
    });
    TL_CHECK(train_last <= static_cast<int>(with_params.size()), "--train-last ", train_last, ": the model has only ",
             with_params.size(), " layers with parameters");
    for (size_t i = 0; i < with_params.size(); ++i)
      for (Parameter* p : with_params[i]->local_parameters())
        p->set_trainable(i + static_cast<size_t>(train_last) >= with_params.size());
  } else {
    std::string layer = torchvision_layer_name(unfreeze_from.empty() ? tm.top_block : unfreeze_from);
    TL_CHECK(model.find_layer(layer) != nullptr, "--unfreeze-from: this ", model.architecture, " has no layer '",
             unfreeze_from, "'", layer != unfreeze_from ? str(" (", layer, ")") : std::string(),
             " (names look like layer4, layer3.1, features.24, block5_conv1)");
    model.freeze_until(layer);
  }
  model.set_trainable(tm.head + ".*", true);
}

std::string trainable_summary(Model& model) {
  int64_t total = 0, trainable = 0, tensors = 0;
  std::string first;
  for (auto& p : model.named_parameters()) {
    total += p.parameter->value.numel();
    if (!p.parameter->trainable()) continue;
    trainable += p.parameter->value.numel();
    ++tensors;
    if (first.empty()) first = p.name;
  }
  return str(fmt_count(trainable), " of ", fmt_count(total), " parameters train (", tensors, " tensors",
             first.empty() ? std::string() : str(", from ", first), ")");
}

BaseAndHead split_base_and_head(Model& model, const std::string& head) {
  model.assign_paths();
  BaseAndHead out;
  std::function<void(Sequential&, const std::string&)> walk = [&](Sequential& s, const std::string& prefix) {
    for (size_t i = 0; i < s.size(); ++i) {
      std::string path = join_path(prefix, s.name_at(i));
      bool last = i + 1 == s.size();
      if (path == head) {
        TL_CHECK(last, "the head '", head, "' is not the model's last layer");
        out.head = &s.at(i);
        return;
      }
      if (head.rfind(path + ".", 0) == 0) {
        auto* inner = dynamic_cast<Sequential*>(&s.at(i));
        TL_CHECK(inner != nullptr && last, "the head '", head, "' is not at the end of the model");
        walk(*inner, path);
        return;
      }
      out.base.push_back(&s.at(i));
    }
  };
  walk(model.root(), "");
  TL_CHECK(out.head != nullptr, "the model has no layer '", head, "'");
  return out;
}

Tensor run_layers(Context& ctx, const std::vector<Layer*>& layers, const Tensor& x, Mode mode) {
  Tensor y = x;
  for (Layer* layer : layers) y = layer->forward(ctx, y, mode);
  return y;
}

std::string hash_base(Context& ctx, Model& model, const std::string& head) {
  Sha256 h;
  auto add = [&](const std::string& name, const Tensor& value) {
    if (name == head || name.rfind(head + ".", 0) == 0) return;
    h.update(str(name, " ", dtype_name(value.dtype()), shape_str(value.shape()), "\n"));
    Tensor cpu = value.to(ctx, Device::CPU);
    h.update(cpu.raw(), cpu.nbytes());
  };
  for (auto& p : model.named_parameters()) add(p.name, p.parameter->value);
  for (auto& b : model.named_buffers()) add(b.name, b.buffer->value);
  return h.finish_hex();
}

}  // namespace tl::app
