#pragma once
// Deterministic image transforms matching torchvision on PIL images, and the conversion of an image to the
// normalised float tensor a checkpoint expects (its "preprocessing.*" metadata).
//
// Resizing is PIL's Image.resize(BILINEAR), which torchvision's Resize uses for PIL images: a separable
// convolution with a triangle filter whose support widens with the downscale factor (antialiasing), computed
// with PIL's 22-bit fixed-point weights and rounded to 8 bits after each pass, so results equal PIL's bytes.
#include <cstdint>
#include <map>
#include <string>

#include "engine/tensor.h"
#include "loaders/image.h"

namespace tl {

// PIL Image.resize((width, height), BILINEAR). Returns a copy when the size is unchanged.
Image resize_bilinear(const Image& image, int width, int height);
// torchvision Resize(shorter): the shorter side becomes `shorter`, the longer one int(shorter * long / short).
Image resize_shorter_side(const Image& image, int shorter);
// torchvision CenterCrop((height, width)): offsets round((in - out) / 2) with Python's round-half-to-even;
// an image smaller than the crop is first padded with black, as torchvision does.
Image center_crop(const Image& image, int width, int height);

// What a checkpoint expects of its input; stored as "preprocessing.*" metadata strings.
struct Preprocessing {
  bool bgr = false;                       // channel order of the tensor: false RGB, true BGR
  double scale = 1;                       // pixel v enters as v / 255 * scale: 1 ([0,1]) or 255 ([0,255])
  float mean[3] = {0.485f, 0.456f, 0.406f};  // subtracted, in the tensor's channel order
  float std[3] = {0.229f, 0.224f, 0.225f};   // divided by, in the tensor's channel order
  int resize = 256;                       // shorter side before cropping; 0: no resize
  int crop = 224;                         // square center crop; 0: no crop
};

// Metadata keys, as written by tl convert and read by tl classify.
constexpr const char* kPreprocessingColor = "preprocessing.color";    // "RGB" | "BGR"
constexpr const char* kPreprocessingScale = "preprocessing.scale";    // "1" | "255"
constexpr const char* kPreprocessingMean = "preprocessing.mean";      // "0.485,0.456,0.406"
constexpr const char* kPreprocessingStd = "preprocessing.std";        // "0.229,0.224,0.225"
constexpr const char* kPreprocessingResize = "preprocessing.resize";  // "256"
constexpr const char* kPreprocessingCrop = "preprocessing.crop";      // "224"

// torchvision ImageNet weights: RGB, [0,1], ImageNet mean/std, Resize 256, CenterCrop 224.
Preprocessing torchvision_preprocessing();
// Keras VGG16 "caffe" mode: BGR, [0,255], minus the BGR mean (103.939,116.779,123.68), std 1, at 256 / 224.
Preprocessing keras_caffe_preprocessing();

// Parses the six keys; throws tl::Error naming the missing or malformed key and its value.
Preprocessing preprocessing_from_metadata(const std::map<std::string, std::string>& metadata);
std::map<std::string, std::string> preprocessing_metadata(const Preprocessing& p);

// HWC uint8 image -> F32 tensor [3, H, W]: channel order, scale, (v - mean) / std. No resizing.
Tensor image_to_tensor(const Image& image, const Preprocessing& p);
// The whole evaluation pipeline: resize the shorter side, center crop, image_to_tensor. Returns [3, crop, crop].
Tensor preprocess(const Image& image, const Preprocessing& p);

}  // namespace tl
