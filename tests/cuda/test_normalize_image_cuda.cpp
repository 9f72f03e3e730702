#include <cstdint>
#include <vector>

#include "cuda/cuda_compare.h"
#include "cuda/cuda_test.h"
#include "engine/context.h"
#include "kernels/normalize_image.h"
#include "support/test_util.h"

using namespace tl;

namespace {

Tensor random_pixels(Rng& rng, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::U8);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<uint8_t>()[i] = static_cast<uint8_t>(rng.below(256));
  return t;
}

Shape chw_of(const Shape& hwc) { return {hwc[0], 3, hwc[1], hwc[2]}; }

// Runs both twins on the same pixels; the device output starts as NaN. Both twins take every value
// from normalized_pixel() (the CUDA twin through a table the host fills with it), so the comparison
// is bit for bit: what it checks is the gather, the HWC -> CHW layout and the channel order.
bool cuda_matches_cpu(Context& ctx, const Tensor& pixels_cpu, const Tensor& pixels_cuda, Tensor& out_cuda,
                      const NormalizeSpec& spec) {
  Tensor expected = Tensor::empty(chw_of(pixels_cpu.shape()));
  normalize_image(ctx, pixels_cpu, spec, expected);
  normalize_image(ctx, pixels_cuda, spec, out_cuda);
  Tensor got = test::to_host(ctx, out_cuda);
  return test::fully_written(got) && test::bit_identical(got, expected);
}

}  // namespace

CUDA_TEST_CASE("normalize_image on CUDA equals the CPU twin bit for bit (one- and four-pixel kernels)") {
  Context ctx({.device = Device::CUDA});
  Rng rng(23);
  // [1,1,1,3]: one pixel. [3,5,7,3]: H*W odd, the one-pixel kernel. [2,8,6,3] and [16,224,224,3]
  // (2.4M pixels, 7.2M outputs): H*W % 4 == 0, the four-pixel kernel.
  for (const Shape& shape : {Shape{1, 1, 1, 3}, Shape{3, 5, 7, 3}, Shape{2, 8, 6, 3}, Shape{16, 224, 224, 3}}) {
    Tensor pixels = random_pixels(rng, shape);
    Tensor pixels_cuda = test::to_cuda(ctx, pixels);
    for (const NormalizeSpec& spec : {torchvision_normalize_spec(), keras_caffe_normalize_spec()}) {
      INFO(shape_str(shape), spec.order == ChannelOrder::BGR ? " caffe" : " torchvision");
      Tensor out = test::poisoned_cuda(ctx, chw_of(shape));
      CHECK(cuda_matches_cpu(ctx, pixels, pixels_cuda, out, spec));
    }
  }
}

CUDA_TEST_CASE("normalize_image on CUDA falls back to one pixel per thread for misaligned views") {
  Context ctx({.device = Device::CUDA});
  Rng rng(29);
  const Shape shape = {2, 4, 6, 3};  // H*W % 4 == 0: only the alignment keeps it off the four-pixel kernel
  const int64_t pixels_n = shape_numel(shape), out_n = pixels_n;  // 3 values per pixel either way
  Tensor pixels = random_pixels(rng, shape);

  // Pixels starting one byte into their buffer (not 4-byte aligned), and out one float in (not 16-byte).
  Tensor pixel_buffer = Tensor::empty(ctx, {pixels_n + 1}, DType::U8, Device::CUDA);
  Tensor pixels_view = pixel_buffer.slice(1, pixels_n + 1).reshape(shape);
  pixels_view.copy_from(ctx, pixels);
  Tensor out_buffer = test::poisoned_cuda(ctx, {out_n + 1});
  Tensor out_view = out_buffer.slice(1, out_n + 1).reshape(chw_of(shape));
  CHECK(cuda_matches_cpu(ctx, pixels, pixels_view, out_view, torchvision_normalize_spec()));

  // Aligned pixels, misaligned out, and the reverse.
  Tensor pixels_cuda = test::to_cuda(ctx, pixels);
  Tensor out = test::poisoned_cuda(ctx, {out_n + 1});
  Tensor out_shifted = out.slice(1, out_n + 1).reshape(chw_of(shape));
  CHECK(cuda_matches_cpu(ctx, pixels, pixels_cuda, out_shifted, keras_caffe_normalize_spec()));
  Tensor out_aligned = test::poisoned_cuda(ctx, chw_of(shape));
  CHECK(cuda_matches_cpu(ctx, pixels, pixels_view, out_aligned, keras_caffe_normalize_spec()));
}

CUDA_TEST_CASE("normalize_image on CUDA checks devices and accepts an empty batch") {
  Context ctx({.device = Device::CUDA});
  Tensor pixels = test::to_cuda(ctx, Tensor::zeros({1, 2, 2, 3}, DType::U8));
  Tensor host_out = Tensor::empty({1, 3, 2, 2});
  CHECK_THROWS_WITH(normalize_image(ctx, pixels, torchvision_normalize_spec(), host_out),
                    doctest::Contains("are on different devices"));
  Tensor none = Tensor::empty(ctx, {0, 2, 2, 3}, DType::U8, Device::CUDA);
  Tensor none_out = Tensor::empty(ctx, {0, 3, 2, 2}, DType::F32, Device::CUDA);
  CHECK_NOTHROW(normalize_image(ctx, none, torchvision_normalize_spec(), none_out));
}
