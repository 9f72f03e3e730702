// CPU reference for normalize_image: one image row (n, h) per parallel iteration, HWC in, CHW out.
#include "engine/parallel.h"
#include "kernels/normalize_image.h"

namespace tl::cpu {

void normalize_image(Context& ctx, const Tensor& pixels, const NormalizeSpec& spec, Tensor& out) {
  TL_CHECK(!pixels.is_cuda(), "normalize_image: CPU kernel called with ", pixels.describe());
  const int64_t n = pixels.size(0), height = pixels.size(1), width = pixels.size(2);
  const int64_t plane = height * width;
  const uint8_t* src = pixels.data<uint8_t>();
  float* dst = out.data<float>();
  int source[3];
  for (int c = 0; c < 3; ++c) source[c] = normalize_source_channel(spec.order, c);
  parallel_for(ctx, n * height, [&](int64_t row) {
    const int64_t image = row / height, h = row % height;
    const uint8_t* in = src + (image * plane + h * width) * 3;
    for (int c = 0; c < 3; ++c) {
      float* o = dst + (image * 3 + c) * plane + h * width;
      for (int64_t w = 0; w < width; ++w) o[w] = normalized_pixel(spec, c, in[w * 3 + source[c]]);
    }
  });
}

}  // namespace tl::cpu
