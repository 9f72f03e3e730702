#pragma once
// Image normalisation on the device side of the pipeline: decoded pixels U8 [N,H,W,3] (HWC, RGB) become
// the F32 [N,3,H,W] tensor a network expects:
//   out[n,c,h,w] = (float(pixel[n,h,w,source(c)] * scale) - mean[c]) / std[c]
// with source(c) = c for RGB output and 2 - c for BGR. Entry points dispatch on the device to the cpu:: or
// cuda:: twin; both compute every value with normalized_pixel() below, so they agree bit for bit.
//
// The same floats as loaders/transforms.cpp image_to_tensor() (tested for all 256 pixel values): there the
// torchvision path computes v / 255.0f in float and the caffe path keeps v; here scale is a double and
// v * scale is rounded to float once, which for scale = 1.0 / 255 gives exactly v / 255.0f for every
// v in 0..255 (v / 255 has a period-8 binary expansion, so it is never near a float rounding tie),
// whereas multiplying by the float 1/255 would differ for 126 of the 256 values.
// A transforms.h Preprocessing p maps to {p.scale / 255, p.bgr ? BGR : RGB, p.mean, p.std}.
#include <cstdint>

#include "engine/tensor.h"

namespace tl {
class Context;

enum class ChannelOrder : uint8_t { RGB, BGR };

struct NormalizeSpec {
  double scale = 1.0 / 255;                  // multiplies the raw 0..255 value: 1/255 torchvision, 1 caffe
  ChannelOrder order = ChannelOrder::RGB;    // channel order of the output tensor
  float mean[3] = {0.485f, 0.456f, 0.406f};  // subtracted, in the output's channel order
  float std[3] = {0.229f, 0.224f, 0.225f};   // divided by, in the output's channel order
};

// torchvision ImageNet weights: RGB, v / 255, ImageNet mean and std.
NormalizeSpec torchvision_normalize_spec();
// Keras "caffe" mode (VGG16, ResNet50): BGR, raw 0..255, minus the BGR mean (103.939, 116.779, 123.68), std 1.
NormalizeSpec keras_caffe_normalize_spec();

// Which input channel feeds output channel c (0..2).
inline int normalize_source_channel(ChannelOrder order, int c) { return order == ChannelOrder::BGR ? 2 - c : c; }

// The value of output channel c for raw pixel value v: the one formula every backend uses.
inline float normalized_pixel(const NormalizeSpec& spec, int c, uint8_t v) {
  const float x = static_cast<float>(static_cast<double>(v) * spec.scale);
  return (x - spec.mean[c]) / spec.std[c];
}

// pixels: U8 [N,H,W,3]; out: F32 [N,3,H,W] on the same device (overwritten). Throws naming the op and the
// shapes on a mismatch, and on a spec whose scale, mean or std is not finite or whose scale or std is <= 0.
void normalize_image(Context& ctx, const Tensor& pixels, const NormalizeSpec& spec, Tensor& out);

namespace cpu {
void normalize_image(Context& ctx, const Tensor& pixels, const NormalizeSpec& spec, Tensor& out);
}  // namespace cpu
namespace cuda {
void normalize_image(Context& ctx, const Tensor& pixels, const NormalizeSpec& spec, Tensor& out);
}  // namespace cuda
}  // namespace tl
