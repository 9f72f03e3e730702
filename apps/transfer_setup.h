#pragma once
// The model side of tl transfer and tl predict: which architecture, which pretrained weights, which new head, what
// trains; the split of a model into its frozen base and its head (the feature extractor and what learns on its
// features); and rebuilding a saved transfer model from its checkpoint metadata.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/model.h"
#include "loaders/augment.h"
#include "loaders/transforms.h"

namespace tl::app {

struct ModelOptions {
  std::string architecture;  // "resnet18" | "vgg16"; "": the weights' metadata, else resnet18
  std::string weights;       // any file import_checkpoint reads; "": random initialisation
  std::string head_spec;     // layers/models/heads.h text form
  bool binary = false;       // one sigmoid output (BCE) instead of one logit per class
  int image_size = 224;
  ResizeMode resize = ResizeMode::ShorterThenCrop;
  uint64_t seed = 1;
};

struct TransferModel {
  std::string head;           // where the new head lives: "fc", "classifier.6", "head"
  std::string top_block;      // the last block, finetune's default: "layer4" | "features.24"
  bool pretrained = false;
  std::string weights_summary;  // one line for the log
  Preprocessing preprocessing;  // colour, scale, mean, std of the weights; geometry from the options
};

// Builds the architecture (sized to the checkpoint's classifier, so it loads), loads the weights strictly except
// for the head, puts the new head on it (classes.size() outputs, or 1 with binary) and records in model.metadata
// what predict needs to rebuild it: "head.spec", "head.outputs", "head.binary", "base.num_classes", "include_top",
// "transfer.image_size", "transfer.resize" and the preprocessing keys. Everything is trainable afterwards.
TransferModel build_transfer_model(Model& model, const ModelOptions& options, const std::vector<std::string>& classes,
                                   Rng& rng);

// Rebuilds the structure of a checkpoint written by tl transfer (or tl convert: a plain architecture sized by its
// classifier) from the file's metadata, then loads it strictly.
void load_saved_model(const std::string& path, Model& model);

// The evaluation geometry a saved model expects: "transfer.image_size" / "transfer.resize" when present, else the
// preprocessing's crop and shorter-side resize.
struct EvalGeometry {
  Preprocessing preprocessing;
  int size = 224;
  ResizeMode resize = ResizeMode::ShorterThenCrop;
  Tensor operator()(const Image& image) const;
};
EvalGeometry eval_geometry_from_metadata(const std::map<std::string, std::string>& metadata);

// ---- What trains.
// Keras VGG16 layer names (block5_conv1, fc1, predictions) -> torchvision's (features.24, classifier.0, ...); other
// names are returned unchanged.
std::string torchvision_layer_name(const std::string& name);
// Only the head trains (extract, two-stage stage 1).
void train_head_only(Model& model, const TransferModel& tm);
// finetune's selection; at most one of train_globs ("layer4.*,fc.*"), unfreeze_from (a layer name), train_last
// (> 0: the last N layers that have parameters) may be given; none: the head plus the top block. The head always
// trains. Throws naming a glob or layer that matches nothing.
void select_trainable(Model& model, const TransferModel& tm, const std::string& train_globs,
                      const std::string& unfreeze_from, int train_last);
// "11,177,538 of 11,177,538 parameters train (62 tensors); frozen: conv1 .. layer3"
std::string trainable_summary(Model& model);

// ---- Base and head.
// The layers of the model in running order, cut at the head: the base is everything before it (resnet18: up to
// flatten; vgg16 with top: up to classifier.5; without top: features and flatten), the head is the layer at
// tm.head, which must be the model's last. The layers stay owned by the model.
struct BaseAndHead {
  std::vector<Layer*> base;
  Layer* head = nullptr;
};
BaseAndHead split_base_and_head(Model& model, const std::string& head);
Tensor run_layers(Context& ctx, const std::vector<Layer*>& layers, const Tensor& x, Mode mode);
// A hash of the base's names, shapes and values (read back to the host when the model is on a device): the feature
// cache's key for "these weights".
std::string hash_base(Context& ctx, Model& model, const std::string& head);

}  // namespace tl::app
