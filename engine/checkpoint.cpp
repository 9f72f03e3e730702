#include "engine/checkpoint.h"

#include <fnmatch.h>

#include <set>

#include "engine/context.h"
#include "engine/error.h"
#include "weights/json.h"
#include "weights/safetensors.h"

namespace tl {

namespace {

// The model's tensors by canonical name, parameters first, in model order.
std::vector<std::pair<std::string, Tensor*>> model_tensors(Model& model) {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& np : model.named_parameters()) out.emplace_back(np.name, &np.parameter->value);
  for (auto& nb : model.named_buffers()) out.emplace_back(nb.name, &nb.buffer->value);
  return out;
}

std::string encode_class_names(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += str(i ? "," : "", json::escape_string(names[i]));
  return out + "]";
}

std::vector<std::string> decode_class_names(const std::string& path, const std::string& text) {
  std::vector<std::string> names;
  try {
    json::Value v = json::parse(text);
    if (!v.is_array()) throw Error("not an array");
    for (const json::Value& item : v.as_array()) names.push_back(item.as_string());
  } catch (const Error& e) {
    throw Error(str(path, ": metadata \"", kClassNamesKey, "\" is not a JSON array of strings: ", e.what()));
  }
  return names;
}

bool allowed_missing(const std::string& name, const std::vector<std::string>& globs) {
  for (const std::string& g : globs)
    if (fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

// The overloads without a Context would make one of their own, whose stream is not ordered after the work queued on
// the model's: a device model must be saved and loaded with the Context it runs on.
void require_host_model(const char* what, const std::string& path, Model& model) {
  for (auto& [name, t] : model_tensors(model))
    TL_CHECK(!t->is_cuda(), path, ": ", what, " without a Context needs a CPU model, but '", name, "' is ",
             t->describe(), " (pass the Context the model runs on)");
}

void append_list(std::string& msg, const char* title, const std::vector<std::string>& items) {
  if (items.empty()) return;
  msg += str("\n  ", title, " (", items.size(), "):");
  for (const std::string& item : items) msg += str("\n    ", item);
}

}  // namespace

void save_checkpoint(Context& ctx, const std::string& path, Model& model,
                     const std::map<std::string, std::string>& extra) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : model_tensors(model)) {
    TL_CHECK(t->defined(), path, ": cannot save: model tensor '", name, "' is undefined");
    tensors.emplace_back(name, t->to(ctx, Device::CPU));
  }
  std::map<std::string, std::string> metadata = model.metadata;
  for (const auto& [k, v] : extra) metadata[k] = v;
  metadata[kArchitectureKey] = model.architecture;
  try {
    metadata[kClassNamesKey] = encode_class_names(model.class_names);
  } catch (const Error& e) {
    throw Error(str(path, ": cannot save class names: ", e.what()));
  }
  write_safetensors(path, tensors, metadata);
}

void save_checkpoint(const std::string& path, Model& model, const std::map<std::string, std::string>& extra) {
  require_host_model("save_checkpoint", path, model);
  Context ctx;
  save_checkpoint(ctx, path, model, extra);
}

void load_checkpoint(Context& ctx, const std::string& path, Model& model, const LoadOptions& options) {
  SafetensorsFile file = SafetensorsFile::open(path);
  auto targets = model_tensors(model);

  std::vector<std::string> missing, unexpected, mismatched;
  std::set<std::string> model_names;
  for (auto& [name, t] : targets) {
    model_names.insert(name);
    const SafetensorsEntry* e = file.find(name);
    if (!e) {
      if (options.strict && !allowed_missing(name, options.allow_missing)) missing.push_back(name);
      continue;
    }
    if (e->dtype != t->dtype())
      mismatched.push_back(str(name, ": checkpoint ", dtype_name(e->dtype), shape_str(e->shape), " vs model ",
                               dtype_name(t->dtype()), shape_str(t->shape())));
    else if (e->shape != t->shape())
      mismatched.push_back(str(name, ": checkpoint ", shape_str(e->shape), " vs model ", shape_str(t->shape())));
  }
  if (options.strict)
    for (const SafetensorsEntry& e : file.entries())
      if (!model_names.count(e.name)) unexpected.push_back(e.name);
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = str(path, ": checkpoint does not match the model");
    append_list(msg, "missing from the checkpoint", missing);
    append_list(msg, "unexpected in the checkpoint", unexpected);
    append_list(msg, "mismatched", mismatched);
    throw Error(msg);
  }

  std::vector<std::string> class_names = model.class_names;
  const auto& meta = file.metadata();
  if (auto it = meta.find(kClassNamesKey); it != meta.end()) class_names = decode_class_names(path, it->second);

  // Read everything first: an I/O error halfway must not leave the model half loaded.
  std::vector<std::pair<Tensor*, Tensor>> loaded;
  for (auto& [name, t] : targets)
    if (file.find(name)) loaded.emplace_back(t, file.read(name));
  for (auto& [target, value] : loaded) target->copy_from(ctx, value);

  if (auto it = meta.find(kArchitectureKey); it != meta.end()) model.architecture = it->second;
  model.class_names = std::move(class_names);
  for (const auto& [k, v] : meta)
    if (k != kArchitectureKey && k != kClassNamesKey) model.metadata[k] = v;
}

void load_checkpoint(const std::string& path, Model& model, const LoadOptions& options) {
  require_host_model("load_checkpoint", path, model);
  Context ctx;
  load_checkpoint(ctx, path, model, options);
}

}  // namespace tl
