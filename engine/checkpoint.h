#pragma once
// Saving and loading a Model's weights as safetensors (weights/safetensors.h), under the canonical
// names of Model::named_parameters() and named_buffers(), with the model's architecture, class names
// and metadata in the file's "__metadata__".
#include <map>
#include <string>
#include <vector>

#include "engine/model.h"

namespace tl {

class Context;

// Metadata keys the checkpoint itself owns; everything else in model.metadata is saved as is.
constexpr const char* kArchitectureKey = "architecture";
constexpr const char* kClassNamesKey = "class_names";  // a JSON array of strings, encoded as a string

// Writes every parameter and buffer (copied to the CPU when on a device) plus metadata: every
// model.metadata key, then `extra` (overriding), then "architecture" and "class_names" from the
// model. Atomic: see write_safetensors.
void save_checkpoint(Context& ctx, const std::string& path, Model& model,
                     const std::map<std::string, std::string>& extra = {});
// Without a Context: a CPU model only (throws naming the first device tensor).
void save_checkpoint(const std::string& path, Model& model, const std::map<std::string, std::string>& extra = {});

struct LoadOptions {
  // Strict: every model tensor must be in the file and every file tensor in the model, as PyTorch's
  // load_state_dict(strict=True). Not strict: missing and unexpected tensors are ignored. Shape and
  // dtype mismatches are errors either way (no conversion happens at load time).
  bool strict = true;
  // fnmatch globs ("fc.*", "head.*") of model tensors that may be absent (a new head).
  std::vector<std::string> allow_missing;
};

// Loads into the model's existing parameter and buffer tensors, on whatever device they live. Checks
// everything and reads every tensor before changing the model, so a failed load leaves it untouched;
// a mismatch is ONE error listing every missing, unexpected and mismatched tensor by name, with both
// shapes ("fc.weight: checkpoint [10,512] vs model [2,512]"). Then sets model.architecture and
// class_names from the file and merges the file's other metadata keys into model.metadata.
void load_checkpoint(Context& ctx, const std::string& path, Model& model, const LoadOptions& options = {});
// Without a Context: a CPU model only (throws naming the first device tensor).
void load_checkpoint(const std::string& path, Model& model, const LoadOptions& options = {});

}  // namespace tl
