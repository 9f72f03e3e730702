// Image decoding against PIL: PNG, BMP and GIF byte for byte; JPEG within a stated decoder tolerance; every kind of
// bad file rejected with its path. Expected values: tests/fixtures/images/expected.txt, made by
// tests/fixtures/make_image_fixtures.py from the committed fixture images and the real hymenoptera photos.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "loaders/image.h"
#include "support/test_util.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/fixtures/images/" + name; }

// expected.txt: "key: value" lines.
const std::map<std::string, std::string>& expected() {
  static const std::map<std::string, std::string> records = [] {
    std::map<std::string, std::string> out;
    std::ifstream in(fixture("expected.txt"));
    REQUIRE_MESSAGE(in.good(), "missing ", fixture("expected.txt"));
    std::string line;
    while (std::getline(in, line)) {
      size_t colon = line.find(": ");
      if (line.empty() || line[0] == '#' || colon == std::string::npos) continue;
      out[line.substr(0, colon)] = line.substr(colon + 2);
    }
    return out;
  }();
  return records;
}

const std::string& record(const std::string& key) {
  auto it = expected().find(key);
  REQUIRE_MESSAGE(it != expected().end(), "expected.txt has no record '", key, "'");
  return it->second;
}

std::vector<uint8_t> record_bytes(const std::string& key) {
  const std::string& hex = record(key);
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<int> record_ints(const std::string& key) {
  std::stringstream in(record(key));
  std::vector<int> out;
  for (int v; in >> v;) out.push_back(v);
  return out;
}

struct Difference {
  double mean_abs = 0;
  int max_abs = 0;
};

Difference compare(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  REQUIRE(a.size() == b.size());
  Difference d;
  for (size_t i = 0; i < a.size(); ++i) {
    int diff = std::abs(int(a[i]) - int(b[i]));
    d.mean_abs += diff;
    d.max_abs = std::max(d.max_abs, diff);
  }
  d.mean_abs /= static_cast<double>(a.size());
  return d;
}

std::vector<uint8_t> every(const std::vector<uint8_t>& v, size_t stride) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < v.size(); i += stride) out.push_back(v[i]);
  return out;
}

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("image") {}
  std::string write(const std::string& name, const std::string& bytes) const {
    std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The message decode_image throws, or "" when it decodes.
std::string decode_error(const std::string& path) {
  try {
    decode_image(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// JPEG decoders legitimately differ: libjpeg-turbo (PIL) and stb_image use different integer IDCTs, chroma
// upsampling and fixed-point YCbCr->RGB constants, so single pixels differ by a level or two. Measured here (stb
// 2.27 vs Debian PIL 9.4): mean absolute difference 0.009-0.14 levels, largest single difference 1-2 levels, on
// the fixtures and the real baseline and progressive photos. The bounds leave about 3x headroom for other
// libjpeg builds while failing for any real decoding error (a wrong colour conversion, a shifted block or a
// swapped channel moves the mean by tens of levels).
constexpr double kJpegMeanAbsTolerance = 0.5;
constexpr int kJpegMaxAbsTolerance = 4;

}  // namespace

TEST_CASE("decode_image: PNG, BMP and GIF equal PIL's convert('RGB') byte for byte") {
  if (!image_decoding_supported()) {
    MESSAGE("skipped: built without stb_image");
    return;
  }
  // rgba: alpha dropped without compositing; bmp: 5x3 with padded rows; gif: first of two frames.
  for (std::string name : {"rgb_7x5.png", "rgba_6x4.png", "pixel_1x1.png", "noise_61x97.png", "rgb_5x3.bmp",
                           "frames_8x6.gif"}) {
    CAPTURE(name);
    Image image = decode_image(fixture(name));
    std::vector<int> size = record_ints("decode/" + name + "/size");
    CHECK(image.width == size.at(0));
    CHECK(image.height == size.at(1));
    CHECK(image.rgb == record_bytes("decode/" + name + "/pixels_hex"));
  }
}

TEST_CASE("decode_image: JPEG within the decoder tolerance of PIL (libjpeg-turbo)") {
  if (!image_decoding_supported()) return;
  for (std::string name : {"photo_64x48.jpg", "gray_13x9.jpg"}) {
    CAPTURE(name);
    Image image = decode_image(fixture(name));
    std::vector<int> size = record_ints("decode/" + name + "/size");
    REQUIRE(image.width == size.at(0));
    REQUIRE(image.height == size.at(1));
    Difference d = compare(image.rgb, record_bytes("decode/" + name + "/pixels_hex"));
    MESSAGE(name, ": mean |stb - PIL| = ", d.mean_abs, " levels, max ", d.max_abs);
    CHECK(d.mean_abs <= kJpegMeanAbsTolerance);
    CHECK(d.max_abs <= kJpegMaxAbsTolerance);
  }
  // A grayscale JPEG becomes three equal channels.
  Image gray = decode_image(fixture("gray_13x9.jpg"));
  bool equal_channels = true;
  for (size_t i = 0; i < gray.rgb.size(); i += 3) equal_channels &= gray.rgb[i] == gray.rgb[i + 1] && gray.rgb[i] == gray.rgb[i + 2];
  CHECK(equal_channels);
}

TEST_CASE("decode_image: real photos (baseline and progressive JPEG, GIF) against PIL") {
  std::string data = test::shared_data_dir();
  if (data.empty() || !image_decoding_supported()) {
    MESSAGE("skipped: ../shared/data is absent or built without stb_image");
    return;
  }
  for (std::string rel : {"hymenoptera/val/ants/10308379_1b6c72e180.jpg", "hymenoptera/val/bees/1032546534_06907fe3b3.jpg",
                          "hymenoptera/val/bees/6a00d8341c630a53ef00e553d0beb18834-800wi.jpg"}) {
    CAPTURE(rel);
    std::string key = "real/" + rel;
    Image image = decode_image(data + "/" + rel);
    std::vector<int> size = record_ints(key + "/size");
    REQUIRE(image.width == size.at(0));
    REQUIRE(image.height == size.at(1));
    Difference d = compare(every(image.rgb, 101), record_bytes(key + "/decoded_every101_hex"));
    MESSAGE(rel, ": mean |stb - PIL| = ", d.mean_abs, " levels, max ", d.max_abs, " (every 101st byte)");
    CHECK(d.mean_abs <= kJpegMeanAbsTolerance);
    CHECK(d.max_abs <= kJpegMaxAbsTolerance);
  }
  // The GIF torchvision's ImageFolder skips: a 300x300 palette image, first frame exactly as PIL decodes it.
  std::string gif = "hymenoptera/train/ants/imageNotFound.gif";
  Image image = decode_image(data + "/" + gif);
  CHECK(image.width == 300);
  CHECK(image.height == 300);
  CHECK(every(image.rgb, 101) == record_bytes("real/" + gif + "/decoded_every101_hex"));
}

TEST_CASE("decode_image: bad files are errors naming the path and the reason") {
  if (!image_decoding_supported()) return;
  TempDir dir;
  std::string photo = read_bytes(fixture("photo_64x48.jpg"));
  std::string png = read_bytes(fixture("noise_61x97.png"));
  std::string bmp = read_bytes(fixture("rgb_5x3.bmp"));
  std::string gif = read_bytes(fixture("frames_8x6.gif"));
  REQUIRE(photo.size() > 1000);

  struct Case {
    std::string file, bytes, reason;
  };
  std::vector<Case> cases = {
      {"empty.jpg", "", "empty file (0 bytes)"},
      {"notes.jpg", "this is a text file, not a photo\n", "not a JPEG, PNG, BMP or GIF image (it starts with bytes 74 68"},
      // Every cut of a JPEG loses its end-of-image marker; stb reports it.
      {"cut_half.jpg", photo.substr(0, photo.size() / 2), "cannot decode JPEG image"},
      {"cut_end.jpg", photo.substr(0, photo.size() - 2), "cannot decode JPEG image"},
      {"header_only.jpg", photo.substr(0, 20), "cannot"},
      {"cut.png", png.substr(0, png.size() / 2), "cannot decode PNG image"},
      {"cut.bmp", bmp.substr(0, bmp.size() - 10), "BMP is truncated: its pixel rows need 102 bytes, the file holds 92"},
      {"cut.gif", gif.substr(0, gif.size() / 2), "GIF is truncated"},
      {"tiny.gif", gif.substr(0, 8), "GIF is truncated (the file ends in the header at byte 8)"},
      // A JPEG signature followed by garbage.
      {"garbage.jpg", std::string("\xFF\xD8\xFF", 3) + std::string(200, 'x'), "cannot"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.file);
    std::string path = dir.write(c.file, c.bytes);
    std::string error = decode_error(path);
    CHECK(error.rfind(path + ": ", 0) == 0);  // starts with the path
    CHECK_MESSAGE(error.find(c.reason) != std::string::npos, error);
  }
  std::string missing = (dir.path / "missing.png").string();
  CHECK(decode_error(missing) == missing + ": cannot open image: No such file or directory");
  CHECK(decode_error(dir.path.string()) == dir.path.string() + ": is a directory, not an image");

  // A real photo cut in half.
  std::string data = test::shared_data_dir();
  if (!data.empty()) {
    std::string real = read_bytes(data + "/hymenoptera/val/ants/10308379_1b6c72e180.jpg");
    std::string path = dir.write("real_cut.jpg", real.substr(0, real.size() / 2));
    CHECK(decode_error(path).find(path + ": cannot decode JPEG image") == 0);
  }
}

TEST_CASE("decode_image: dimensions are capped before anything is allocated") {
  if (!image_decoding_supported()) return;
  // A PNG header claiming width x height (stb reads IHDR without checking its CRC), and no pixel data.
  auto png_header = [](uint32_t width, uint32_t height) {
    std::string s("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
    for (uint32_t v : {width, height})
      for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>(v >> shift);
    s += std::string("\x08\x02\0\0\0", 5) + std::string(4, '\0');  // 8-bit RGB, CRC
    return s;
  };
  std::string error;
  try {
    // 18000^2 = 324M pixels: within stb's own limit (2^30 bytes), beyond ours.
    decode_image_bytes(reinterpret_cast<const uint8_t*>(png_header(18000, 18000).data()), 33, "huge.png");
  } catch (const Error& e) {
    error = e.what();
  }
  CHECK(error == "huge.png: PNG image of 18000x18000 pixels exceeds the limits (32768 per side, 268435456 pixels)");
  try {
    decode_image_bytes(reinterpret_cast<const uint8_t*>(png_header(40000, 10).data()), 33, "wide.png");
    FAIL("a 40000-pixel-wide PNG was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "wide.png: cannot read the PNG header: Very large image (corrupt?)");
  }
}
