#pragma once
// Classifier heads for transfer learning, built the way a PyTorch user writes them so that checkpoint names stay
// what that user would get, and the preprocessing metadata of torchvision's models.
//
// replace_head(model, k, rng): the final Linear (resnet18: fc, vgg16: classifier.6, or whatever Linear ends the
// model) becomes a fresh Linear(in, k) under the same name, as `model.fc = nn.Linear(512, k)`.
//
// add_head(model, spec, rng, input_shape): a head described by a HeadSpec. Its text form (tl transfer --head):
// comma-separated tokens, hidden widths in order, the rest anywhere:
//   <integer>     a hidden layer: Linear(width), ReLU, and Dropout(p) when dropout > 0
//   dropout=<p>   the dropout after each hidden ReLU, p in [0, 1)
//   append        keep the existing classifier and put the head after its output
// The final Linear's width (the number of classes, or 1 for a sigmoid/BCE head) is given separately; "" is a single
// Linear. Where the head goes, and the names it gets:
//   append                  root gains "head" = Sequential(hidden..., Linear(out, outputs)) after everything; the
//                           model must end with a Linear (head.0.weight [k, 1000] after a 1000-way classifier)
//   model ends in a Linear  (resnet18, vgg16 with top) that Linear is replaced under its own name: by a Linear when
//                           there are no hidden layers (fc.weight), else by a Sequential, as
//                           `model.fc = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 1))`
//                           (fc.0.weight, fc.3.weight)
//   otherwise               (a feature extractor: vgg16 without top) root gains "flatten" when the output is a
//                           feature map and "head" = Sequential(hidden..., Linear(C*H*W, outputs)), as Keras'
//                           Flatten() + Dense(); the flattened width depends on the image size, hence input_shape
// The seeds' heads: Flatten + Dense(k) on VGG16 without top = add_head(m, parse_head_spec("", k), rng, {3, 150, 150});
// Dense(256) + ReLU + Dropout(0.5) + Dense(1) for BCE = parse_head_spec("256,dropout=0.5", 1); a new fc or
// classifier.6 = replace_head (or parse_head_spec("", k)); a Linear after the 1000-way classifier =
// parse_head_spec("append", k). New layers are trainable, F32 on the CPU, initialised from `rng` as PyTorch's
// defaults; move the model to its device afterwards.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.h"
#include "engine/rng.h"

namespace tl {

struct HeadSpec {
  std::vector<int64_t> hidden;  // widths of the hidden Linear+ReLU layers, input side first
  double dropout = 0.0;         // after each hidden ReLU; 0: no Dropout layers
  int64_t outputs = 0;          // width of the final Linear
  bool append = false;          // keep the current classifier and feed its output to the head
};

// Parses the text form above; throws tl::Error naming the spec and the bad token.
HeadSpec parse_head_spec(const std::string& text, int64_t outputs);
// The canonical text form ("256,dropout=0.5"); parse_head_spec(format_head_spec(s), s.outputs) == s.
std::string format_head_spec(const HeadSpec& spec);

// Builds the head; returns the name under which its parameters live ("fc", "classifier.6", "head"), so the caller
// can train just the head (set_trainable(name + ".*", true)) or allow it to be missing from a checkpoint.
// input_shape {C, H, W} of one image is needed only when the model ends in a feature map.
std::string add_head(Model& model, const HeadSpec& spec, Rng& rng, const Shape& input_shape = {});

// Replaces the model's final Linear with a fresh Linear(in, num_classes); throws when the model ends in no Linear
// (vgg16 without top: use add_head).
void replace_head(Model& model, int64_t num_classes, Rng& rng);

// The per-image output shape of the model for a per-image input shape ({3, 150, 150} -> {512, 4, 4} for vgg16
// without top), computed from the layers' hyper-parameters without running anything. Throws naming the layer when
// a shape does not fit or a layer kind is unknown here.
Shape model_output_shape(Model& model, const Shape& input_shape);

// torchvision's preprocessing in model.metadata: preprocessing.color "RGB", .scale "1" (inputs in [0, 1]), .mean
// "0.485,0.456,0.406", .std "0.229,0.224,0.225", .resize "256", .crop "224".
void set_torchvision_preprocessing(Model& model);

}  // namespace tl
