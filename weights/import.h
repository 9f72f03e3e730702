#pragma once
// Pretrained weights from any file tl reads, for tl transfer: the container is recognised by its first bytes
// (never by its name), read by its reader, and handed back with torchvision's names; then copied into a model by
// name, strictly, except for a classifier head that the caller has replaced.
//   safetensors    our own checkpoints (tl convert, tl transfer) and hub files (timm VGG names are mapped)
//   .pth           torchvision's zip, legacy and tar layouts (weights/pth.h)
//   Keras .h5      VGG16 with or without top (weights/keras_h5.h)
#include <string>
#include <vector>

#include "engine/model.h"
#include "weights/imported.h"

namespace tl {

// Reads the whole checkpoint. metadata always holds "source.format" and "source.file" (the file name), plus what
// the reader learned; "architecture" ("resnet18" | "vgg16") is inferred from the tensor names when the file does
// not say, and so is "include_top" ("true" when the final classifier is present); a .pth with no preprocessing of
// its own gets torchvision's (the manifest's when the file is a known official checkpoint). Errors name the file.
ImportedCheckpoint import_checkpoint(const std::string& path);

// The container tl recognises in a file's first bytes: "pth", "keras-h5", "safetensors"; throws naming the file
// and its first bytes otherwise.
std::string detect_checkpoint_container(const std::string& path);

// What load_pretrained did.
struct PretrainedLoadReport {
  int loaded = 0;                       // model tensors given the checkpoint's values
  std::vector<std::string> head_kept;   // head tensors left at their fresh initialisation (missing or mis-shaped)
  std::vector<std::string> ignored;     // checkpoint tensors under the head globs that the model does not have
  int absent_counters = 0;              // num_batches_tracked absent from the file (pre-0.4.1 PyTorch): set to 0
};

// Copies the checkpoint's tensors into the model's parameters and buffers by name, as load_state_dict(strict=True)
// does: every missing, unexpected, mis-shaped or mis-typed tensor is listed in ONE error (with both shapes), and
// nothing is changed unless everything fits. The exceptions are the head: model tensors matching any of
// `allow_missing_globs` (fnmatch, e.g. "fc.*") may be absent from the checkpoint, checkpoint tensors matching them
// that the model lacks are ignored, and with skip_head_mismatch a mis-shaped one is skipped (a 100-way fc in the
// file, a 2-way fc in the model). BatchNorm's num_batches_tracked may be absent (set to 0); F64 values are
// narrowed to F32 parameters. Throws tl::Error naming the checkpoint's source file.
void load_pretrained(Model& model, const ImportedCheckpoint& checkpoint, const std::vector<std::string>& allow_missing_globs,
                     bool skip_head_mismatch, PretrainedLoadReport* report = nullptr);

}  // namespace tl
