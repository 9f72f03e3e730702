#include "kernels/normalize_image.h"

#include <cmath>

namespace tl {

NormalizeSpec torchvision_normalize_spec() { return NormalizeSpec{}; }

NormalizeSpec keras_caffe_normalize_spec() {
  NormalizeSpec spec;
  spec.scale = 1;
  spec.order = ChannelOrder::BGR;
  spec.mean[0] = 103.939f, spec.mean[1] = 116.779f, spec.mean[2] = 123.68f;
  spec.std[0] = spec.std[1] = spec.std[2] = 1.0f;
  return spec;
}

namespace {

void check_spec(const NormalizeSpec& spec) {
  const char* op = "normalize_image";
  TL_CHECK(std::isfinite(spec.scale) && spec.scale > 0, op, ": scale ", spec.scale, " must be finite and positive");
  TL_CHECK(spec.order == ChannelOrder::RGB || spec.order == ChannelOrder::BGR, op, ": unknown channel order ",
           int(spec.order));
  for (int c = 0; c < 3; ++c) {
    TL_CHECK(std::isfinite(spec.mean[c]), op, ": mean[", c, "] = ", spec.mean[c], " is not finite");
    TL_CHECK(std::isfinite(spec.std[c]) && spec.std[c] > 0, op, ": std[", c, "] = ", spec.std[c],
             " must be finite and positive");
  }
}

}  // namespace

void normalize_image(Context& ctx, const Tensor& pixels, const NormalizeSpec& spec, Tensor& out) {
  const char* op = "normalize_image";
  TL_CHECK(pixels.defined() && out.defined(), op, ": undefined tensor");
  TL_CHECK(pixels.dtype() == DType::U8 && pixels.dim() == 4 && pixels.size(3) == 3, op,
           ": pixels must be U8 [N,H,W,3] (HWC, as decoded), got ", pixels.describe());
  const Shape expected = {pixels.size(0), 3, pixels.size(1), pixels.size(2)};
  TL_CHECK(out.dtype() == DType::F32 && out.shape() == expected, op, ": out must be F32 ", shape_str(expected),
           " for pixels ", shape_str(pixels.shape()), ", got ", out.describe());
  TL_CHECK(out.device() == pixels.device(), op, ": pixels ", pixels.describe(), " and out ", out.describe(),
           " are on different devices");
  check_spec(spec);
  if (pixels.is_cuda()) return cuda::normalize_image(ctx, pixels, spec, out);
  cpu::normalize_image(ctx, pixels, spec, out);
}

}  // namespace tl
