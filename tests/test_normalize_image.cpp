// normalize_image (U8 [N,H,W,3] -> F32 [N,3,H,W]) on the CPU: hand-computed values for the torchvision
// and Keras caffe specs, bit-for-bit agreement with loaders' image_to_tensor for every pixel value, the
// HWC -> CHW layout on a batch, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "engine/context.h"
#include "kernels/normalize_image.h"
#include "loaders/image.h"
#include "loaders/transforms.h"
#include "support/test_util.h"

using namespace tl;

namespace {

Tensor pixels_from(const Shape& shape, const std::vector<uint8_t>& values) {
  Tensor t = Tensor::empty(shape, DType::U8);
  REQUIRE(static_cast<size_t>(t.numel()) == values.size());
  for (size_t i = 0; i < values.size(); ++i) t.data<uint8_t>()[i] = values[i];
  return t;
}

Tensor poisoned_output(const Tensor& pixels) {
  return Tensor::full({pixels.size(0), 3, pixels.size(1), pixels.size(2)}, std::numeric_limits<double>::quiet_NaN());
}

// Two pixels side by side: (R,G,B) = (255,128,0) and (51,102,204).
const std::vector<uint8_t> kTwoPixels = {255, 128, 0, 51, 102, 204};

}  // namespace

TEST_CASE("normalize_image with the torchvision spec: (v / 255 - mean) / std, RGB, HWC to CHW") {
  Context ctx;
  Tensor pixels = pixels_from({1, 1, 2, 3}, kTwoPixels);
  Tensor out = poisoned_output(pixels);
  normalize_image(ctx, pixels, torchvision_normalize_spec(), out);
  // out[0, c, 0, w] at c * 2 + w. By hand: (1 - 0.485) / 0.229, (0.2 - 0.485) / 0.229; (128/255 - 0.456) / 0.224,
  // (0.4 - 0.456) / 0.224; (0 - 0.406) / 0.225, (0.8 - 0.406) / 0.225.
  const std::vector<double> expected = {2.2489083, -1.2445415, 0.2051821, -0.25, -1.8044444, 1.7511111};
  REQUIRE(out.shape() == Shape{1, 3, 1, 2});
  for (size_t i = 0; i < expected.size(); ++i) CHECK(out.item(int64_t(i)) == doctest::Approx(expected[i]).epsilon(1e-6));
  // And exactly the float arithmetic torchvision does: ToTensor's v / 255 in float, then Normalize in float.
  CHECK(out.data<float>()[0] == (255 / 255.0f - 0.485f) / 0.229f);
  CHECK(out.data<float>()[2] == (128 / 255.0f - 0.456f) / 0.224f);
  CHECK(out.data<float>()[5] == (204 / 255.0f - 0.406f) / 0.225f);
}

TEST_CASE("normalize_image with the Keras caffe spec: BGR, raw 0..255 minus the BGR mean") {
  Context ctx;
  Tensor pixels = pixels_from({1, 1, 2, 3}, kTwoPixels);
  Tensor out = poisoned_output(pixels);
  normalize_image(ctx, pixels, keras_caffe_normalize_spec(), out);
  // Channel 0 is blue: 0 - 103.939, 204 - 103.939; green: 128 - 116.779, 102 - 116.779; red: 255 - 123.68, 51 - 123.68.
  const std::vector<double> expected = {-103.939, 100.061, 11.221, -14.779, 131.32, -72.68};
  for (size_t i = 0; i < expected.size(); ++i) CHECK(out.item(int64_t(i)) == doctest::Approx(expected[i]).epsilon(1e-6));
  CHECK(out.data<float>()[1] == 204.0f - 103.939f);
}

TEST_CASE("scale = 1.0 / 255 as a double gives exactly v / 255.0f for every pixel value") {
  // The reason NormalizeSpec::scale is a double: the float 1/255 would not.
  int differ_with_float_scale = 0;
  for (int v = 0; v < 256; ++v) {
    CHECK(static_cast<float>(v * (1.0 / 255)) == static_cast<float>(v) / 255.0f);
    differ_with_float_scale += static_cast<float>(v) * (1.0f / 255) != static_cast<float>(v) / 255.0f;
  }
  CHECK(differ_with_float_scale > 0);
}

TEST_CASE("normalize_image equals image_to_tensor bit for bit for every pixel value, both specs") {
  Context ctx;
  // One row of 256 pixels: red runs through 0..255, green backwards, blue in another order.
  Image image;
  image.width = 256, image.height = 1;
  std::vector<uint8_t> rgb;
  for (int v = 0; v < 256; ++v)
    for (int value : {v, 255 - v, (v * 7 + 3) % 256}) rgb.push_back(static_cast<uint8_t>(value));
  image.rgb = rgb;
  Tensor pixels = pixels_from({1, 1, 256, 3}, rgb);

  struct Case {
    const char* name;
    Preprocessing preprocessing;
    NormalizeSpec spec;
  };
  for (const Case& c : {Case{"torchvision", torchvision_preprocessing(), torchvision_normalize_spec()},
                        Case{"caffe", keras_caffe_preprocessing(), keras_caffe_normalize_spec()}}) {
    INFO(c.name);
    // The spec the issue describes for each Preprocessing: scale / 255, same order, mean and std.
    CHECK(c.spec.scale == c.preprocessing.scale / 255);
    CHECK((c.spec.order == ChannelOrder::BGR) == c.preprocessing.bgr);
    Tensor reference = image_to_tensor(image, c.preprocessing);  // [3, 1, 256]
    Tensor out = poisoned_output(pixels);
    normalize_image(ctx, pixels, c.spec, out);
    CHECK(test::bit_identical(out.reshape({3, 1, 256}), reference));
  }
}

TEST_CASE("normalize_image lays out a batch of odd-sized images, a view and a custom spec") {
  Context ctx({.threads = 3});
  Rng rng(19);
  const int64_t n = 3, h = 5, w = 7;
  std::vector<uint8_t> values(static_cast<size_t>(n * h * w * 3));
  for (auto& v : values) v = static_cast<uint8_t>(rng.below(256));
  Tensor pixels = pixels_from({n, h, w, 3}, values);
  NormalizeSpec spec;
  spec.scale = 0.5, spec.order = ChannelOrder::BGR;
  spec.mean[0] = 1, spec.mean[1] = -2, spec.mean[2] = 3;
  spec.std[0] = 2, spec.std[1] = 0.5f, spec.std[2] = 4;

  Tensor out = poisoned_output(pixels);
  normalize_image(ctx, pixels, spec, out);
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          float v = values[static_cast<size_t>(((i * h + y) * w + x) * 3 + (2 - c))];
          float expected = (v * 0.5f - spec.mean[c]) / spec.std[c];  // v * 0.5 is exact in float and double
          wrong += out.data<float>()[((i * 3 + c) * h + y) * w + x] != expected;
        }
  CHECK(wrong == 0);

  // A view of images 1..2 gives those images' outputs.
  Tensor part = Tensor::full({2, 3, h, w}, std::numeric_limits<double>::quiet_NaN());
  normalize_image(ctx, pixels.slice(1, 3), spec, part);
  CHECK(test::bit_identical(part, out.slice(1, 3).clone()));

  // Empty batch: nothing to do, no error.
  Tensor none = Tensor::empty({0, 3, h, w});
  CHECK_NOTHROW(normalize_image(ctx, pixels.slice(0, 0), spec, none));
}

TEST_CASE("normalize_image rejects wrong dtypes, shapes and specs, naming the op and the shapes") {
  Context ctx;
  Tensor pixels = pixels_from({1, 1, 2, 3}, kTwoPixels);
  Tensor out = Tensor::empty({1, 3, 1, 2});
  const NormalizeSpec spec = torchvision_normalize_spec();
  CHECK_THROWS_WITH(normalize_image(ctx, pixels.to_dtype(DType::F32), spec, out),
                    "normalize_image: pixels must be U8 [N,H,W,3] (HWC, as decoded), got F32[1,1,2,3] cpu");
  Tensor rgba = Tensor::zeros({1, 1, 2, 4}, DType::U8);
  CHECK_THROWS_WITH(normalize_image(ctx, rgba, spec, out), doctest::Contains("pixels must be U8 [N,H,W,3]"));
  Tensor flat = Tensor::zeros({2, 3}, DType::U8);
  CHECK_THROWS_WITH(normalize_image(ctx, flat, spec, out), doctest::Contains("pixels must be U8 [N,H,W,3]"));
  Tensor hwc = Tensor::empty({1, 1, 2, 3});
  CHECK_THROWS_WITH(normalize_image(ctx, pixels, spec, hwc),
                    "normalize_image: out must be F32 [1,3,1,2] for pixels [1,1,2,3], got F32[1,1,2,3] cpu");
  Tensor doubles = Tensor::empty({1, 3, 1, 2}, DType::F64);
  CHECK_THROWS_WITH(normalize_image(ctx, pixels, spec, doubles), doctest::Contains("out must be F32 [1,3,1,2]"));

  NormalizeSpec bad = spec;
  bad.std[1] = 0;
  CHECK_THROWS_WITH(normalize_image(ctx, pixels, bad, out), "normalize_image: std[1] = 0 must be finite and positive");
  bad = spec;
  bad.scale = std::nan("");
  CHECK_THROWS_WITH(normalize_image(ctx, pixels, bad, out), doctest::Contains("scale nan must be finite and positive"));
  bad = spec;
  bad.mean[2] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(normalize_image(ctx, pixels, bad, out), "normalize_image: mean[2] = inf is not finite");
}
