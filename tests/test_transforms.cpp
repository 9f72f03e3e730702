// Transforms against hand-computed values and against PIL / torchvision (tests/fixtures/images/expected.txt, made by
// tests/fixtures/make_image_fixtures.py): resize equals PIL's bytes exactly, the whole Resize + CenterCrop +
// ToTensor + Normalize pipeline equals torchvision on PNG input and is within the bound on real JPEGs.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "loaders/image.h"
#include "loaders/transforms.h"
#include "support/test_util.h"

using namespace tl;

namespace {

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/fixtures/images/" + name; }

const std::string& record(const std::string& key) {
  static const std::map<std::string, std::string> records = [] {
    std::map<std::string, std::string> out;
    std::ifstream in(fixture("expected.txt"));
    std::string line;
    while (std::getline(in, line)) {
      size_t colon = line.find(": ");
      if (!line.empty() && line[0] != '#' && colon != std::string::npos) out[line.substr(0, colon)] = line.substr(colon + 2);
    }
    return out;
  }();
  auto it = records.find(key);
  REQUIRE_MESSAGE(it != records.end(), "expected.txt has no record '", key, "'");
  return it->second;
}

std::vector<uint8_t> record_bytes(const std::string& key) {
  const std::string& hex = record(key);
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<double> record_numbers(const std::string& key) {
  std::stringstream in(record(key));
  std::vector<double> out;
  for (double v; in >> v;) out.push_back(v);
  return out;
}

// A 3-channel image whose channels are given separately (each row-major, width x height).
Image make_image(int width, int height, const std::vector<int>& r, const std::vector<int>& g, const std::vector<int>& b) {
  Image image;
  image.width = width;
  image.height = height;
  for (size_t i = 0; i < r.size(); ++i) image.rgb.insert(image.rgb.end(), {uint8_t(r[i]), uint8_t(g[i]), uint8_t(b[i])});
  REQUIRE(image.rgb.size() == size_t(width) * height * 3);
  return image;
}

std::vector<int> channel(const Image& image, int c) {
  std::vector<int> out;
  for (size_t i = c; i < image.rgb.size(); i += 3) out.push_back(image.rgb[i]);
  return out;
}

struct Stats {
  double mean_abs = 0, max_abs = 0;
};

Stats compare(const std::vector<double>& ours, const std::vector<double>& theirs) {
  REQUIRE(ours.size() == theirs.size());
  Stats s;
  for (size_t i = 0; i < ours.size(); ++i) {
    double d = std::abs(ours[i] - theirs[i]);
    s.mean_abs += d;
    s.max_abs = std::max(s.max_abs, d);
  }
  s.mean_abs /= static_cast<double>(ours.size());
  return s;
}

std::vector<double> every(const Tensor& t, size_t stride) {
  std::vector<double> all = t.to_vector(), out;
  for (size_t i = 0; i < all.size(); i += stride) out.push_back(all[i]);
  return out;
}

std::string metadata_error(std::map<std::string, std::string> metadata) {
  try {
    preprocessing_from_metadata(metadata);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The bound for real photos, in normalised units. JPEG decoders differ by a level or two on single
// pixels (see test_image.cpp), and resampling spreads that over neighbours; one level is 1/255/0.225 = 0.017
// normalised units, so a mean difference of 0.01 still means "the same pipeline". Everything else (resampling,
// cropping, normalisation) is exact on PNG input, tested below with a 1e-6 bound.
constexpr double kRealImageMeanAbs = 1e-2;

}  // namespace

TEST_CASE("resize_bilinear: hand-computed PIL values") {
  // 4 -> 2 pixels: scale 2, so the triangle spans 2 input pixels each side of the output center (antialiasing).
  // Output 0 has center 1.0 and reads inputs 0..2 with weights 0.75, 0.75, 0.25 (normalised 3/7, 3/7, 1/7):
  // (0*3 + 100*3 + 200) / 7 = 71.4 -> 71. Output 1 (center 3.0) reads 1..3 with 1/7, 3/7, 3/7:
  // (100 + 200*3 + 40*3) / 7 = 117.1 -> 117.
  Image row = make_image(4, 1, {0, 100, 200, 40}, {10, 10, 10, 10}, {255, 0, 255, 0});
  Image shrunk = resize_bilinear(row, 2, 1);
  CHECK(channel(shrunk, 0) == std::vector<int>{71, 117});
  CHECK(channel(shrunk, 1) == std::vector<int>{10, 10});
  CHECK(channel(shrunk, 2) == std::vector<int>{146, 109});  // (255*3 + 255) / 7 = 145.7, 255*3 / 7 = 109.3
  // 2 -> 4 pixels: plain bilinear, edges clamped: centers 0.25, 0.75, 1.25, 1.75 -> 0, 50, 150, 200.
  Image two = make_image(2, 1, {0, 200}, {0, 200}, {0, 200});
  CHECK(channel(resize_bilinear(two, 4, 1), 0) == std::vector<int>{0, 50, 150, 200});
  // The same along the vertical axis.
  Image column = make_image(1, 4, {0, 100, 200, 40}, {0, 0, 0, 0}, {0, 0, 0, 0});
  CHECK(channel(resize_bilinear(column, 1, 2), 0) == std::vector<int>{71, 117});
  // 1x1 -> any size: every output reads the one pixel.
  Image dot = make_image(1, 1, {200}, {100}, {50});
  Image big = resize_bilinear(dot, 5, 3);
  CHECK(channel(big, 0) == std::vector<int>(15, 200));
  CHECK(channel(big, 2) == std::vector<int>(15, 50));
  // Same size: unchanged.
  CHECK(resize_bilinear(row, 4, 1).rgb == row.rgb);
  CHECK_THROWS_AS(resize_bilinear(row, 0, 1), Error);
}

TEST_CASE("resize_bilinear: equals PIL Image.resize(BILINEAR) byte for byte") {
  Image noise = decode_image(fixture("noise_61x97.png"));
  // Non-integer downscales, one axis only, upscale, and a tiny target.
  for (auto [w, h] : {std::pair{30, 50}, {17, 23}, {61, 40}, {7, 97}, {67, 101}, {5, 3}}) {
    CAPTURE(w);
    CAPTURE(h);
    Image ours = resize_bilinear(noise, w, h);
    REQUIRE(ours.width == w);
    REQUIRE(ours.height == h);
    CHECK(ours.rgb == record_bytes("resize/noise_61x97.png/" + std::to_string(w) + "x" + std::to_string(h) + "_hex"));
  }
}

TEST_CASE("resize_shorter_side and center_crop: torchvision's sizes and offsets") {
  auto blank = [](int w, int h) {
    Image image;
    image.width = w, image.height = h;
    image.rgb.assign(size_t(w) * h * 3, 7);
    return image;
  };
  // torchvision: long = int(256 * long / short), truncated.
  for (auto [w, h, rw, rh] : {std::tuple{500, 375, 341, 256}, {366, 500, 256, 349}, {800, 533, 384, 256},
                              {256, 256, 256, 256}, {1, 1, 256, 256}, {3, 1000, 256, 85333}}) {
    if (rh > kMaxImageSide) {
      CHECK_THROWS_AS(resize_shorter_side(blank(w, h), 256), Error);
      continue;
    }
    Image r = resize_shorter_side(blank(w, h), 256);
    CHECK(r.width == rw);
    CHECK(r.height == rh);
  }
  // Pixel value = 10 * y + x identifies where the crop starts.
  Image grid;
  grid.width = 8, grid.height = 5;
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 8; ++x) grid.rgb.insert(grid.rgb.end(), 3, uint8_t(10 * y + x));
  // Offsets round((in - out) / 2) half to even: columns (8-3)/2 = 2.5 -> 2, rows (5-2)/2 = 1.5 -> 2.
  Image c = center_crop(grid, 3, 2);
  CHECK(channel(c, 0) == std::vector<int>{22, 23, 24, 32, 33, 34});
  // (8-5)/2 = 1.5 -> 2 and (5-4)/2 = 0.5 -> 0.
  CHECK(channel(center_crop(grid, 5, 4), 0) ==
        std::vector<int>{2, 3, 4, 5, 6, 12, 13, 14, 15, 16, 22, 23, 24, 25, 26, 32, 33, 34, 35, 36});
  // Larger than the image: padded with black; left padding (10-8)//2 = 1, top (6-5)//2 = 0, bottom 1.
  Image padded = center_crop(grid, 10, 6);
  CHECK(padded.at(0, 0, 0) == 0);
  CHECK(padded.at(2, 1, 1) == 11);
  CHECK(padded.at(8, 4, 2) == 47);
  CHECK(padded.at(9, 4, 0) == 0);   // right padding
  CHECK(padded.at(8, 5, 0) == 0);   // bottom padding
  CHECK(padded.at(5, 0, 0) == 4);
}

TEST_CASE("preprocess: torchvision Resize + CenterCrop + ToTensor + Normalize, exactly on PNG input") {
  Image noise = decode_image(fixture("noise_61x97.png"));
  Preprocessing tv = torchvision_preprocessing();
  tv.resize = 20, tv.crop = 18;  // 61x97 -> 20x31, crop rows from round(6.5) = 6
  Tensor ours = preprocess(noise, tv);
  REQUIRE(ours.shape() == Shape{3, 18, 18});
  // The pixels are PIL's exactly; the float arithmetic is torchvision's in the same order, so only a compiler's
  // fused multiply-add could move a value, by an ulp (1e-7).
  Stats s = compare(ours.to_vector(), record_numbers("transform/noise_61x97.png/resize20_crop18"));
  CHECK(s.max_abs <= 1e-6);

  Preprocessing caffe = keras_caffe_preprocessing();
  caffe.resize = 20, caffe.crop = 18;
  Stats c = compare(preprocess(noise, caffe).to_vector(), record_numbers("transform/noise_61x97.png/caffe_resize20_crop18"));
  CHECK(c.max_abs <= 1e-4);  // values up to 150 in float32: an ulp is 1.5e-5

  // A 1x1 image becomes a constant tensor of its normalised colour.
  Tensor dot = preprocess(decode_image(fixture("pixel_1x1.png")), torchvision_preprocessing());
  REQUIRE(dot.shape() == Shape{3, 224, 224});
  for (int ch = 0; ch < 3; ++ch) {
    float expected = (float(std::vector<int>{200, 100, 50}[ch]) / 255.0f - tv.mean[ch]) / tv.std[ch];
    CHECK(dot.item(ch * 224 * 224) == doctest::Approx(expected).epsilon(1e-7));
    CHECK(dot.item(ch * 224 * 224 + 224 * 224 - 1) == doctest::Approx(expected).epsilon(1e-7));
  }
}

TEST_CASE("preprocess: JPEG input within the issue's bound of torchvision") {
  Preprocessing tv = torchvision_preprocessing();
  tv.resize = 40, tv.crop = 32;
  Stats s = compare(preprocess(decode_image(fixture("photo_64x48.jpg")), tv).to_vector(),
                    record_numbers("transform/photo_64x48.jpg/resize40_crop32"));
  MESSAGE("photo_64x48.jpg: mean |ours - torchvision| = ", s.mean_abs, ", max ", s.max_abs);
  CHECK(s.mean_abs <= kRealImageMeanAbs);

  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent (real photos not compared)");
    return;
  }
  for (std::string rel : {"hymenoptera/val/ants/10308379_1b6c72e180.jpg", "hymenoptera/val/bees/1032546534_06907fe3b3.jpg",
                          "hymenoptera/val/bees/6a00d8341c630a53ef00e553d0beb18834-800wi.jpg"}) {
    CAPTURE(rel);
    Image image = decode_image(data + "/" + rel);
    Tensor x = preprocess(image, torchvision_preprocessing());
    REQUIRE(x.shape() == Shape{3, 224, 224});
    Stats t = compare(every(x, 97), record_numbers("real/" + rel + "/tensor_every97"));
    MESSAGE(rel, ": mean |ours - torchvision| = ", t.mean_abs, ", max ", t.max_abs, " (every 97th value)");
    CHECK(t.mean_abs <= kRealImageMeanAbs);
    std::vector<double> all = x.to_vector(), mean = record_numbers("real/" + rel + "/tensor_mean");
    for (int ch = 0; ch < 3; ++ch) {
      double m = 0;
      for (int i = 0; i < 224 * 224; ++i) m += all[ch * 224 * 224 + i];
      CHECK(std::abs(m / (224 * 224) - mean[ch]) <= kRealImageMeanAbs);
    }
    // Keras caffe mode on the same pixels: the same bound expressed in 0..255 units (0.01 * 0.226 * 255 = 0.58).
    Stats c = compare(every(preprocess(image, keras_caffe_preprocessing()), 97), record_numbers("real/" + rel + "/caffe_every97"));
    CHECK(c.mean_abs <= 0.58);
  }
}

TEST_CASE("preprocessing metadata: round trip, missing and malformed keys") {
  for (const Preprocessing& p : {torchvision_preprocessing(), keras_caffe_preprocessing()}) {
    std::map<std::string, std::string> m = preprocessing_metadata(p);
    Preprocessing back = preprocessing_from_metadata(m);
    CHECK(back.bgr == p.bgr);
    CHECK(back.scale == p.scale);
    CHECK(back.resize == p.resize);
    CHECK(back.crop == p.crop);
    for (int c = 0; c < 3; ++c) {
      CHECK(back.mean[c] == p.mean[c]);
      CHECK(back.std[c] == p.std[c]);
    }
  }
  std::map<std::string, std::string> tv = preprocessing_metadata(torchvision_preprocessing());
  CHECK(tv.at("preprocessing.mean") == "0.485,0.456,0.406");
  CHECK(tv.at("preprocessing.std") == "0.229,0.224,0.225");
  CHECK(preprocessing_metadata(keras_caffe_preprocessing()).at("preprocessing.mean") == "103.939,116.779,123.68");

  auto with = [&](const std::string& key, const std::string& value) {
    auto m = tv;
    m[key] = value;
    return m;
  };
  auto without = [&](const std::string& key) {
    auto m = tv;
    m.erase(key);
    return m;
  };
  CHECK(metadata_error(without("preprocessing.std")).find("preprocessing metadata \"preprocessing.std\" is missing") == 0);
  CHECK(metadata_error(with("preprocessing.color", "RGBA")) ==
        "preprocessing metadata \"preprocessing.color\" = \"RGBA\": expected RGB or BGR");
  CHECK(metadata_error(with("preprocessing.mean", "0.5,0.5")) ==
        "preprocessing metadata \"preprocessing.mean\" = \"0.5,0.5\": expected 3 comma-separated number(s), got 2");
  CHECK(metadata_error(with("preprocessing.mean", "0.5,x,0.5")) ==
        "preprocessing metadata \"preprocessing.mean\" = \"0.5,x,0.5\": 'x' is not a number");
  CHECK(metadata_error(with("preprocessing.std", "1,0,1")).find("every std must be positive") != std::string::npos);
  CHECK(metadata_error(with("preprocessing.scale", "2")).find("expected 1 or 255") != std::string::npos);
  CHECK(metadata_error(with("preprocessing.resize", "22.5")).find("whole number of pixels") != std::string::npos);
  CHECK(metadata_error(with("preprocessing.crop", "-1")).find("whole number of pixels") != std::string::npos);
  CHECK(metadata_error(with("preprocessing.crop", "")).find("got 0") != std::string::npos);
  CHECK(metadata_error(tv).empty());
}
