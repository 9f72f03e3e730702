#pragma once
// Keras VGG16 weights (.h5, HDF5) -> torchvision names and layouts, through libhdf5.
//
// Keras 2 (and the 2016 Keras 1 release files) store weights as: attribute `layer_names` (byte strings, fixed- or
// variable-length, possibly chunked as layer_names0, layer_names1, ...) on the root, or on the `model_weights`
// group of a full-model file; one group per layer with attribute `weight_names`; each weight the dataset
// <layer group>/<weight name> (a nested group for Keras 2 names like "block1_conv1/kernel:0"). The reader walks
// those attributes and never guesses dataset names.
//
// Conversion (once, here, never at load time):
//   block{b}_conv{c} kernel HWIO -> OIHW as features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.weight, bias as .bias;
//   fc1/fc2/predictions kernel (in,out) -> (out,in) as classifier.{0,3,6}.weight, bias as .bias; fc1's input rows
//   are re-ordered from Keras' Flatten of the HWC map to torchvision's CHW flatten.
// Everything is validated first: float32 datasets, ranks, shapes chained between layers, no unknown layer with
// weights, no missing layer. Errors are tl::Error "<path>: ..." naming the layer or dataset; libhdf5's own error
// printing is silenced while the reader runs.
#include <string>

#include "weights/imported.h"

namespace tl {

// False when tl was built without libhdf5 (TL_HAVE_HDF5 undefined); read_keras_vgg16_h5 then always throws.
bool keras_h5_supported();

// Reads Keras VGG16 weights (with or without top; weights-only or full-model file). Returns format "keras-h5",
// tensors in torchvision order (features, then classifier when the file has the top), and metadata:
// architecture "vgg16", include_top "true"/"false", num_classes (with top), keras.version / keras.backend when the
// file records them, and Keras' "caffe" preprocessing (BGR, scale 255, mean 103.939,116.779,123.68, std 1,1,1,
// resize 256, crop 224).
ImportedCheckpoint read_keras_vgg16_h5(const std::string& path);

}  // namespace tl
