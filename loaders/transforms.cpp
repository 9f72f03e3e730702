#include "loaders/transforms.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "engine/error.h"

namespace tl {

namespace {

// PIL keeps resampling weights as fixed point with 22 fractional bits: 8 bits of pixel value and 2 bits of
// headroom for filters with negative lobes fit in an int32 sum.
constexpr int kWeightBits = 22;

// For each output index along one axis: the first input index, how many inputs it reads and their weights.
struct AxisTaps {
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // count[i] used entries at i * stride
  int stride = 0;
};

// The triangle filter (bilinear), 1 at 0 and 0 from |x| >= 1.
double triangle(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Output pixel i covers input [i * scale, (i + 1) * scale); its center is (i + 0.5) * scale in input
// coordinates, where input pixel j sits at j + 0.5. When shrinking, the filter is stretched by the scale so
// every input pixel contributes (antialiasing); when enlarging it stays one pixel wide (plain bilinear).
AxisTaps compute_taps(int in_size, int out_size) {
  double scale = static_cast<double>(in_size) / out_size;
  double filter_scale = std::max(scale, 1.0);
  double support = 1.0 * filter_scale;  // the triangle's support is 1 input pixel at unit scale
  AxisTaps taps;
  taps.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(static_cast<size_t>(out_size) * taps.stride, 0);
  std::vector<double> w(taps.stride);
  for (int i = 0; i < out_size; ++i) {
    double center = (i + 0.5) * scale;
    // Window rounded to the nearest pixel boundary, as PIL does (truncation after +0.5).
    int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    double total = 0;
    for (int j = lo; j < hi; ++j) total += w[j - lo] = triangle((j - center + 0.5) / filter_scale);
    for (int j = lo; j < hi; ++j) {
      double normalized = total != 0 ? w[j - lo] / total : w[j - lo];
      double fixed = normalized * (1 << kWeightBits);
      taps.weights[static_cast<size_t>(i) * taps.stride + (j - lo)] =
          static_cast<int32_t>(fixed < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    taps.first[i] = lo;
    taps.count[i] = hi - lo;
  }
  return taps;
}

// Rounds the fixed-point sum (which started at one half) to 8 bits, clamped.
inline uint8_t to_byte(int32_t sum) {
  int32_t v = sum >> kWeightBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over rows [row_begin, row_end) of `in`.
Image resample_rows(const Image& in, int width, int row_begin, int row_end) {
  AxisTaps taps = compute_taps(in.width, width);
  Image out;
  out.width = width;
  out.height = row_end - row_begin;
  out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src = in.rgb.data() + static_cast<size_t>(y + row_begin) * in.width * 3;
    uint8_t* dst = out.rgb.data() + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width; ++x) {
      const int32_t* w = taps.weights.data() + static_cast<size_t>(x) * taps.stride;
      const uint8_t* s = src + static_cast<size_t>(taps.first[x]) * 3;
      for (int c = 0; c < 3; ++c) {
        int32_t sum = 1 << (kWeightBits - 1);
        for (int k = 0; k < taps.count[x]; ++k) sum += s[k * 3 + c] * w[k];
        dst[x * 3 + c] = to_byte(sum);
      }
    }
  }
  return out;
}

// Vertical pass; `taps.first` is relative to the first row of `in`.
Image resample_columns(const Image& in, int height, const AxisTaps& taps) {
  Image out;
  out.width = in.width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(out.width) * height * 3);
  size_t row = static_cast<size_t>(in.width) * 3;
  std::vector<int32_t> sums(row);
  for (int y = 0; y < height; ++y) {
    std::fill(sums.begin(), sums.end(), 1 << (kWeightBits - 1));
    const int32_t* w = taps.weights.data() + static_cast<size_t>(y) * taps.stride;
    for (int k = 0; k < taps.count[y]; ++k) {
      const uint8_t* src = in.rgb.data() + static_cast<size_t>(taps.first[y] + k) * row;
      for (size_t i = 0; i < row; ++i) sums[i] += src[i] * w[k];
    }
    uint8_t* dst = out.rgb.data() + static_cast<size_t>(y) * row;
    for (size_t i = 0; i < row; ++i) dst[i] = to_byte(sums[i]);
  }
  return out;
}

void check_image(const char* who, const Image& image) {
  TL_CHECK(image.width > 0 && image.height > 0 &&
               image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3,
           who, ": invalid image ", image.width, "x", image.height, " with ", image.rgb.size(), " bytes");
}

// Python's round() of d / 2 for an integer d >= 0: halves go to the even neighbour.
int half_to_even(int d) {
  int half = d / 2;
  return (d % 2 == 1 && half % 2 == 1) ? half + 1 : half;
}

std::vector<double> parse_numbers(const std::string& key, const std::string& text, size_t count) {
  std::vector<double> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    double v = std::strtod(item.c_str(), &end);
    TL_CHECK(!item.empty() && end && *end == '\0' && std::isfinite(v), "preprocessing metadata \"", key,
             "\" = \"", text, "\": '", item, "' is not a number");
    values.push_back(v);
  }
  TL_CHECK(values.size() == count, "preprocessing metadata \"", key, "\" = \"", text, "\": expected ", count,
           " comma-separated number(s), got ", values.size());
  return values;
}

// Shortest text that reads back as the same float: "0.485", not "0.485000014".
std::string join3(const float v[3]) {
  std::string out;
  for (int c = 0; c < 3; ++c) {
    char buffer[32];
    auto result = std::to_chars(buffer, buffer + sizeof buffer, v[c]);
    out.append(buffer, result.ptr);
    if (c < 2) out += ',';
  }
  return out;
}

}  // namespace

Image resize_bilinear(const Image& image, int width, int height) {
  check_image("resize_bilinear", image);
  TL_CHECK(width > 0 && height > 0 && width <= kMaxImageSide && height <= kMaxImageSide,
           "resize_bilinear: invalid output size ", width, "x", height);
  bool horizontal = width != image.width, vertical = height != image.height;
  if (!horizontal && !vertical) return image;
  if (!vertical) return resample_rows(image, width, 0, image.height);
  AxisTaps rows = compute_taps(image.height, height);
  if (!horizontal) return resample_columns(image, height, rows);
  // Only the input rows the vertical pass reads need the horizontal pass.
  int row_begin = rows.first.front(), row_end = rows.first.back() + rows.count.back();
  for (int& f : rows.first) f -= row_begin;
  return resample_columns(resample_rows(image, width, row_begin, row_end), height, rows);
}

Image resize_shorter_side(const Image& image, int shorter) {
  check_image("resize_shorter_side", image);
  TL_CHECK(shorter > 0, "resize_shorter_side: size must be positive, got ", shorter);
  bool landscape = image.width > image.height;
  int short_side = landscape ? image.height : image.width, long_side = landscape ? image.width : image.height;
  // torchvision: int(size * long / short), a truncated double quotient.
  double longer = static_cast<double>(int64_t(shorter) * long_side) / short_side;
  TL_CHECK(longer <= kMaxImageSide, "resize_shorter_side: ", image.width, "x", image.height, " to shorter side ",
           shorter, " would be ", static_cast<int64_t>(longer), " pixels long");
  int new_long = static_cast<int>(longer);
  return landscape ? resize_bilinear(image, new_long, shorter) : resize_bilinear(image, shorter, new_long);
}

Image center_crop(const Image& image, int width, int height) {
  check_image("center_crop", image);
  TL_CHECK(width > 0 && height > 0, "center_crop: invalid crop ", width, "x", height);
  // Top-left corner of the crop in input coordinates; negative when torchvision would pad.
  int left = width > image.width ? -((width - image.width) / 2) : half_to_even(image.width - width);
  int top = height > image.height ? -((height - image.height) / 2) : half_to_even(image.height - height);
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.assign(static_cast<size_t>(width) * height * 3, 0);
  for (int y = 0; y < height; ++y) {
    int sy = y + top;
    if (sy < 0 || sy >= image.height) continue;
    for (int x = 0; x < width; ++x) {
      int sx = x + left;
      if (sx < 0 || sx >= image.width) continue;
      for (int c = 0; c < 3; ++c) out.rgb[(static_cast<size_t>(y) * width + x) * 3 + c] = image.at(sx, sy, c);
    }
  }
  return out;
}

Preprocessing torchvision_preprocessing() { return Preprocessing{}; }

Preprocessing keras_caffe_preprocessing() {
  Preprocessing p;
  p.bgr = true;
  p.scale = 255;
  p.mean[0] = 103.939f, p.mean[1] = 116.779f, p.mean[2] = 123.68f;
  p.std[0] = p.std[1] = p.std[2] = 1.0f;
  return p;
}

Preprocessing preprocessing_from_metadata(const std::map<std::string, std::string>& metadata) {
  auto get = [&](const char* key) -> const std::string& {
    auto it = metadata.find(key);
    TL_CHECK(it != metadata.end(), "preprocessing metadata \"", key,
             "\" is missing (the checkpoint does not say how its inputs were normalised; convert it with tl convert)");
    return it->second;
  };
  Preprocessing p;
  const std::string& color = get(kPreprocessingColor);
  TL_CHECK(color == "RGB" || color == "BGR", "preprocessing metadata \"", kPreprocessingColor, "\" = \"", color,
           "\": expected RGB or BGR");
  p.bgr = color == "BGR";
  p.scale = parse_numbers(kPreprocessingScale, get(kPreprocessingScale), 1)[0];
  TL_CHECK(p.scale == 1 || p.scale == 255, "preprocessing metadata \"", kPreprocessingScale, "\" = \"",
           get(kPreprocessingScale), "\": expected 1 or 255");
  std::vector<double> mean = parse_numbers(kPreprocessingMean, get(kPreprocessingMean), 3);
  std::vector<double> std_dev = parse_numbers(kPreprocessingStd, get(kPreprocessingStd), 3);
  for (int c = 0; c < 3; ++c) {
    TL_CHECK(std_dev[c] > 0, "preprocessing metadata \"", kPreprocessingStd, "\" = \"", get(kPreprocessingStd),
             "\": every std must be positive");
    p.mean[c] = static_cast<float>(mean[c]);
    p.std[c] = static_cast<float>(std_dev[c]);
  }
  for (auto [key, target] : {std::pair{kPreprocessingResize, &p.resize}, std::pair{kPreprocessingCrop, &p.crop}}) {
    double v = parse_numbers(key, get(key), 1)[0];
    TL_CHECK(v >= 0 && v <= kMaxImageSide && v == std::floor(v), "preprocessing metadata \"", key, "\" = \"", get(key),
             "\": expected a whole number of pixels in [0, ", kMaxImageSide, "]");
    *target = static_cast<int>(v);
  }
  return p;
}

std::map<std::string, std::string> preprocessing_metadata(const Preprocessing& p) {
  return {{kPreprocessingColor, p.bgr ? "BGR" : "RGB"},
          {kPreprocessingScale, p.scale == 255 ? "255" : "1"},
          {kPreprocessingMean, join3(p.mean)},
          {kPreprocessingStd, join3(p.std)},
          {kPreprocessingResize, std::to_string(p.resize)},
          {kPreprocessingCrop, std::to_string(p.crop)}};
}

Tensor image_to_tensor(const Image& image, const Preprocessing& p) {
  check_image("image_to_tensor", image);
  int64_t plane = int64_t(image.width) * image.height;
  Tensor out = Tensor::empty({3, image.height, image.width});
  float* dst = out.data<float>();
  for (int c = 0; c < 3; ++c) {
    int source_channel = p.bgr ? 2 - c : c;
    // torchvision divides the float pixel by 255 (ToTensor), then subtracts and divides in float32
    // (Normalize); caffe mode keeps the 0..255 value. Same operations, same order, same float rounding.
    for (int64_t i = 0; i < plane; ++i) {
      float v = image.rgb[static_cast<size_t>(i) * 3 + source_channel];
      float x = p.scale == 255 ? v : (p.scale == 1 ? v / 255.0f : static_cast<float>(v / 255.0 * p.scale));
      dst[c * plane + i] = (x - p.mean[c]) / p.std[c];
    }
  }
  return out;
}

Tensor preprocess(const Image& image, const Preprocessing& p) {
  Image resized = p.resize > 0 ? resize_shorter_side(image, p.resize) : image;
  Image cropped = p.crop > 0 ? center_crop(resized, p.crop, p.crop) : resized;
  return image_to_tensor(cropped, p);
}

}  // namespace tl
