#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/rng.h"
#include "report/canvas.h"
#include "report/confusion.h"
#include "report/font.h"
#include "report/plot.h"
#include "report/png_writer.h"
#include "support/temp_dir.h"

#ifdef TL_HAVE_ZLIB
#include <zlib.h>
#endif

using namespace tl;
using namespace tl::report;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("report") {}
};

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

uint32_t be32(const uint8_t* p) { return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]; }

// Bit-at-a-time CRC-32, written independently of the table-driven one under test.
uint32_t reference_crc(const uint8_t* data, size_t n) {
  uint32_t crc = 0xFFFFFFFF;
  for (size_t i = 0; i < n; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

// Decodes a zlib stream made only of stored blocks, checking every header field and the Adler-32 trailer.
Bytes inflate_stored(const Bytes& z) {
  REQUIRE(z.size() >= 6);
  CHECK(z[0] == 0x78);
  CHECK((z[0] * 256 + z[1]) % 31 == 0);  // FCHECK
  CHECK((z[1] & 0x20) == 0);             // no preset dictionary
  Bytes out;
  size_t at = 2;
  bool final = false;
  while (!final) {
    REQUIRE(at + 5 <= z.size());
    REQUIRE((z[at] & 0x06) == 0);  // BTYPE 00
    final = z[at] & 1;
    unsigned len = z[at + 1] | (z[at + 2] << 8), nlen = z[at + 3] | (z[at + 4] << 8);
    REQUIRE(len == (~nlen & 0xFFFF));
    at += 5;
    REQUIRE(at + len <= z.size());
    out.insert(out.end(), z.begin() + at, z.begin() + at + len);
    at += len;
  }
  REQUIRE(at + 4 == z.size());
  // Adler-32 by its definition, independently of report::adler32.
  uint64_t a = 1, b = 0;
  for (uint8_t byte : out) a = (a + byte) % 65521, b = (b + a) % 65521;
  CHECK(be32(&z[at]) == ((b << 16) | a));
  return out;
}

struct Decoded {
  int width = 0, height = 0;
  Bytes rgb;
  bool stored = false;  // every deflate block was a stored one
};

// A PNG reader for what the writer produces: colour type 2, 8 bits, filter 0 rows. Every chunk's CRC is checked.
Decoded decode_png(const Bytes& png) {
  const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  REQUIRE(png.size() > 8);
  REQUIRE(std::equal(signature, signature + 8, png.begin()));
  Decoded d;
  Bytes idat;
  std::vector<std::string> order;
  for (size_t at = 8; at < png.size();) {
    REQUIRE(at + 12 <= png.size());
    uint32_t len = be32(&png[at]);
    REQUIRE(at + 12 + len <= png.size());
    std::string type(png.begin() + at + 4, png.begin() + at + 8);
    CHECK_MESSAGE(be32(&png[at + 8 + len]) == reference_crc(&png[at + 4], 4 + len), "CRC of ", type);
    const uint8_t* data = &png[at + 8];
    if (type == "IHDR") {
      REQUIRE(len == 13);
      d.width = static_cast<int>(be32(data));
      d.height = static_cast<int>(be32(data + 4));
      CHECK(data[8] == 8);   // bit depth
      CHECK(data[9] == 2);   // RGB
      CHECK(data[10] == 0);  // deflate
      CHECK(data[11] == 0);  // adaptive filtering
      CHECK(data[12] == 0);  // not interlaced
    } else if (type == "IDAT") {
      idat.insert(idat.end(), data, data + len);
    } else if (type == "IEND") {
      CHECK(len == 0);
    }
    order.push_back(type);
    at += 12 + len;
  }
  REQUIRE(order.size() >= 3);
  CHECK(order.front() == "IHDR");
  CHECK(order.back() == "IEND");
  size_t row = static_cast<size_t>(d.width) * 3;
  Bytes raw;
  // A stored stream announces itself: its first block header has BTYPE 00.
  d.stored = idat.size() > 2 && (idat[2] & 0x06) == 0;
  if (d.stored) raw = inflate_stored(idat);
#ifdef TL_HAVE_ZLIB
  Bytes by_zlib((row + 1) * d.height + 1);  // one spare byte: a longer stream would fill it
  uLongf size = by_zlib.size();
  REQUIRE(uncompress(by_zlib.data(), &size, idat.data(), idat.size()) == Z_OK);
  by_zlib.resize(size);
  if (d.stored) CHECK(by_zlib == raw);
  raw = by_zlib;
#else
  REQUIRE_MESSAGE(d.stored, "without zlib the test reader only inflates stored blocks");
#endif
  REQUIRE(raw.size() == (row + 1) * d.height);
  for (int y = 0; y < d.height; ++y) {
    const uint8_t* line = &raw[y * (row + 1)];
    REQUIRE(line[0] == 0);  // filter type None
    d.rgb.insert(d.rgb.end(), line + 1, line + 1 + row);
  }
  return d;
}

Bytes random_rgb(int width, int height, uint64_t seed) {
  Rng rng(seed);
  Bytes rgb(static_cast<size_t>(width) * height * 3);
  for (auto& v : rgb) v = static_cast<uint8_t>(rng.next_u64());
  return rgb;
}

int count_color(const Canvas& c, uint32_t color, int x0, int y0, int x1, int y1) {
  int n = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) n += c.pixel(x, y) == color;
  return n;
}

}  // namespace

TEST_CASE("report: checksums match the published check values") {
  const std::string nine = "123456789";
  auto p = reinterpret_cast<const uint8_t*>(nine.data());
  CHECK(report::crc32(p, 9) == 0xCBF43926u);
  CHECK(report::crc32(p + 4, 5, report::crc32(p, 4)) == 0xCBF43926u);  // running
  const std::string wiki = "Wikipedia";
  CHECK(adler32(reinterpret_cast<const uint8_t*>(wiki.data()), wiki.size()) == 0x11E60398u);
  Bytes big = random_rgb(300, 100, 1);  // 90000 bytes: past the 5552-byte reduction interval
  uint64_t a = 1, b = 0;
  for (uint8_t byte : big) a = (a + byte) % 65521, b = (b + a) % 65521;
  CHECK(adler32(big.data(), big.size()) == ((b << 16) | a));
  CHECK(report::crc32(big.data(), big.size()) == reference_crc(big.data(), big.size()));
}

TEST_CASE("report: PNG round trip is pixel-exact, deflated and stored") {
  for (bool use_zlib : {true, false}) {
    CAPTURE(use_zlib);
    // 37x23 is odd-sized; 211x150 makes 95,100 bytes of image data, more than one 65,535-byte stored block.
    for (auto [w, h] : {std::pair{37, 23}, std::pair{211, 150}, std::pair{1, 1}}) {
      Bytes rgb = random_rgb(w, h, w * 1000 + h);
      Decoded d = decode_png(encode_png(w, h, rgb, use_zlib));
      CHECK(d.width == w);
      CHECK(d.height == h);
      CHECK(d.rgb == rgb);
      if (!use_zlib) CHECK(d.stored);  // (zlib itself may choose stored blocks for random bytes)
    }
  }
#ifdef TL_HAVE_ZLIB
  // A flat image really is deflated when zlib is there.
  Bytes flat(100 * 80 * 3, 200);
  Bytes png = encode_png(100, 80, flat);
  CHECK(png.size() < flat.size() / 10);
  CHECK(decode_png(png).rgb == flat);
#endif
}

TEST_CASE("report: stored zlib stream") {
  Bytes data = random_rgb(200, 250, 7);  // 150,000 bytes: three blocks, the last one partial
  Bytes z = zlib_stored(data.data(), data.size());
  CHECK(z.size() == 2 + 3 * 5 + data.size() + 4);
  CHECK(inflate_stored(z) == data);
  Bytes empty = zlib_stored(nullptr, 0);
  CHECK(empty == Bytes{0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x01});
  Bytes exact(65535, 0xAB);  // exactly one full block: no empty block after it
  CHECK(zlib_stored(exact.data(), exact.size()).size() == 2 + 5 + 65535 + 4);
#ifdef TL_HAVE_ZLIB
  // A real inflater agrees.
  Bytes back(data.size());
  uLongf size = back.size();
  REQUIRE(uncompress(back.data(), &size, z.data(), z.size()) == Z_OK);
  CHECK(size == data.size());
  CHECK(back == data);
#endif
}

TEST_CASE("report: write_png writes atomically and names the path in errors") {
  TempDir dir;
  std::string path = dir.file("image.png");
  Bytes rgb = random_rgb(9, 4, 3);
  write_png(path, 9, 4, rgb);
  write_png(path, 9, 4, rgb);  // over an existing file
  CHECK(read_bytes(path) == encode_png(9, 4, rgb));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);  // no temporary left

  std::string missing = dir.file("no/such/dir/x.png");
  CHECK_THROWS_WITH_AS(write_png(missing, 9, 4, rgb), doctest::Contains((missing + ": cannot create").c_str()),
                       Error);
  CHECK_THROWS_WITH_AS(write_png(path, 9, 5, rgb), doctest::Contains((path + ": png: 9x5 RGB needs 135").c_str()),
                       Error);
  CHECK_THROWS_AS(write_png(path, 0, 4, {}), Error);
  CHECK(read_bytes(path) == encode_png(9, 4, rgb));  // a failed write leaves the old file
}

TEST_CASE("report: font and canvas") {
  for (char c = 33; c < 127; ++c) {
    const uint8_t* g = font::glyph(c);
    int ink = 0;
    for (int r = 0; r < font::kGlyphHeight; ++r) {
      ink += g[r] != 0;
      CHECK((g[r] & ~0x1F) == 0);  // five columns only
    }
    CHECK_MESSAGE(ink > 0, "glyph '", c, "' is blank");
  }
  CHECK(font::glyph('\n') == font::glyph('?'));
  CHECK(font::printable("caf\xC3\xA9\t!") == "caf?" "?!");  // split: "??!" is a trigraph
  CHECK(font::text_width("abc", 2) == (3 * font::kAdvance - 1) * 2);
  CHECK(font::fit_text("abcdefghij", font::text_width("abcdefghij")) == "abcdefghij");
  CHECK(font::fit_text("abcdefghij", font::text_width("abcd...")) == "abcd...");
  CHECK(font::fit_text("abcdefghij", 3) == "");

  Canvas c(40, 30, 0x000000);
  c.draw_line({2, 10}, {30, 10}, 0xFF0000, 1);
  CHECK(count_color(c, 0xFF0000, 0, 0, 40, 30) == 29);  // x = 2..30 of row 10, nothing else
  CHECK(count_color(c, 0xFF0000, 2, 10, 31, 11) == 29);
  c.draw_line({5, 2}, {5, 2}, 0x00FF00, 5);  // a dot: the pixels within 2.5 of (5, 2), clipped at the top
  CHECK(c.pixel(5, 0) == 0x00FF00);
  CHECK(c.pixel(7, 3) == 0x00FF00);
  CHECK(c.pixel(8, 2) == 0x000000);

  // 'T' at scale 2: its top bar is row 0 of the glyph, 5 columns = 10 pixels wide, 2 pixels tall.
  Canvas t(30, 30, 0xFFFFFF);
  t.draw_text(3, 4, "T", 0x0000FF, 2);
  CHECK(count_color(t, 0x0000FF, 3, 4, 13, 6) == 20);
  CHECK(count_color(t, 0x0000FF, 0, 0, 30, 30) == 20 + 6 * 4);  // plus the stem: 6 rows of 2x2
  // Rotated: the bar becomes a column on the left, 10 pixels tall, and the stem runs right from its middle.
  Canvas u(30, 30, 0xFFFFFF);
  u.draw_text_up(3, 4, "T", 0x0000FF, 2);
  CHECK(count_color(u, 0x0000FF, 3, 4, 5, 14) == 20);
  CHECK(count_color(u, 0x0000FF, 5, 8, 17, 10) == 24);
}

TEST_CASE("report: nice ticks") {
  Ticks t = nice_ticks(0.52, 0.97, 5);
  CHECK(t.step == doctest::Approx(0.1));
  REQUIRE(t.values.size() == 6);
  CHECK(t.values.front() == doctest::Approx(0.5));
  CHECK(t.values.back() == doctest::Approx(1.0));
  Ticks exact = nice_ticks(0.3, 0.6, 3);  // bounds that are multiples of the step add no tick
  CHECK(exact.values.size() == 4);
  CHECK(format_tick(t.values[0], t.step) == "0.5");
  CHECK(format_tick(1200, 500) == "1200");
  CHECK(format_tick(0.25, 0.05) == "0.25");
  CHECK(format_tick(-1e-18, 0.1) == "0.0");
  CHECK(format_tick(3e8, 1e8) == "3e+08");
  CHECK_THROWS_AS(nice_ticks(1, 1, 5), Error);
}

TEST_CASE("report: a chart puts the data where its frame says") {
  const uint32_t red = 0xD62728, blue = 0x1F77B4;
  std::vector<double> rising = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
  std::vector<double> gappy = {0.9, 0.7, NAN, 0.35, NAN, 0.55, 0.5};
  Chart left{"Accuracy", "epoch", "accuracy", {{"train", rising, red, false}, {"val", gappy, blue, true}}};
  Chart right{"Constant", "epoch", "loss", {{"flat", std::vector<double>(8, 2.0), blue}, {"none", {}, red}}};
  std::vector<ChartFrame> frames;
  Canvas c = render_charts({left, right}, 1000, 400, &frames);
  REQUIRE(frames.size() == 2);
  const ChartFrame& f = frames[0];
  CHECK(f.right < 500);
  CHECK(frames[1].left > 500);
  CHECK(f.y_min <= 0.1);
  CHECK(f.y_max >= 0.9);
  CHECK(f.x_min == 1);
  CHECK(f.x_max == 7);

  // Axes: the frame's sides are drawn in the axis colour.
  for (int y = f.top; y <= f.bottom; y += 7) CHECK(c.pixel(f.left, y) == kAxisColor);
  for (int x = f.left; x <= f.right; x += 7) CHECK(c.pixel(x, f.bottom) == kAxisColor);
  // The solid red line passes through every point and every segment's midpoint.
  for (size_t i = 0; i + 1 < rising.size(); ++i) {
    for (double t : {0.0, 0.5}) {
      double x = i + 1 + t, y = rising[i] + t * (rising[i + 1] - rising[i]);
      Point p = f.to_pixel(x, y);
      CHECK_MESSAGE(c.pixel(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y))) == red, "x=", x);
    }
  }
  // The right chart's red series is empty: its only red is the legend swatch, a short horizontal stroke.
  int red_x0 = 1000, red_x1 = 0, red_y0 = 400, red_y1 = 0;
  for (int y = 0; y < 400; ++y)
    for (int x = 500; x < 1000; ++x)
      if (c.pixel(x, y) == red) {
        red_x0 = std::min(red_x0, x);
        red_x1 = std::max(red_x1, x);
        red_y0 = std::min(red_y0, y);
        red_y1 = std::max(red_y1, y);
      }
  CHECK(red_x1 >= red_x0);
  CHECK(red_x1 - red_x0 < 40);
  CHECK(red_y1 - red_y0 < 10);
  // The gap: no blue in the columns around epoch 3, inside the frame; the lone point at epoch 4 is a dot.
  int gap_x = static_cast<int>(std::lround(f.to_pixel(3, 0).x));
  CHECK(count_color(c, blue, gap_x - 3, f.top + 1, gap_x + 4, f.bottom) == 0);
  Point lone = f.to_pixel(4, 0.35);
  CHECK(c.pixel(static_cast<int>(std::lround(lone.x)), static_cast<int>(std::lround(lone.y))) == blue);
  // Dashed: between epochs 6 and 7 the blue line has both drawn and skipped pixels along its path.
  int drawn = 0, skipped = 0;
  for (double t = 0.2; t <= 0.8; t += 0.01) {
    Point p = f.to_pixel(6 + t, 0.55 - 0.05 * t);
    (c.pixel(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y))) == blue ? drawn : skipped)++;
  }
  CHECK(drawn > 10);
  CHECK(skipped > 10);

  // The constant series is a horizontal line inside the frame, not on its edge.
  const ChartFrame& g = frames[1];
  CHECK(g.y_min < 2.0);
  CHECK(g.y_max > 2.0);
  int row = static_cast<int>(std::lround(g.to_pixel(1, 2.0).y));
  int x0 = static_cast<int>(std::lround(g.to_pixel(1, 2.0).x)), x1 = static_cast<int>(std::lround(g.to_pixel(8, 2.0).x));
  CHECK(count_color(c, blue, x0, row, x1 + 1, row + 1) == x1 - x0 + 1);
  CHECK(row > g.top + 2);
  CHECK(row < g.bottom - 2);
}

TEST_CASE("report: single points, empty charts and a written history PNG") {
  TempDir dir;
  Chart single{"One epoch", "epoch", "accuracy", {{"train", {0.7}, 0x00AA00}}};
  Chart empty{"", "", "", {}};
  std::vector<ChartFrame> frames;
  Canvas c = render_charts({single, empty}, 700, 300, &frames);
  Point p = frames[0].to_pixel(1, 0.7);
  CHECK(c.pixel(static_cast<int>(std::lround(p.x)), static_cast<int>(std::lround(p.y))) == 0x00AA00);
  CHECK(p.x == doctest::Approx((frames[0].left + frames[0].right) / 2.0));  // the lone epoch is centred
  CHECK(c.pixel(frames[1].left, (frames[1].top + frames[1].bottom) / 2) == kAxisColor);

  // Past 30 epochs points get no markers, except a lone point between gaps, which would otherwise be a speck.
  std::vector<double> long_run(40, 0.5);
  long_run[18] = long_run[20] = NAN;
  long_run[19] = 0.9;
  Canvas l = render_charts({{"", "", "", {{"x", long_run, 0x00AA00}}}}, 600, 300, &frames);
  Point lone = frames[0].to_pixel(20, 0.9), plain = frames[0].to_pixel(30, 0.5);
  CHECK(l.pixel(static_cast<int>(std::lround(lone.x)) + 2, static_cast<int>(std::lround(lone.y))) == 0x00AA00);
  CHECK(l.pixel(static_cast<int>(std::lround(plain.x)), static_cast<int>(std::lround(plain.y)) + 2) != 0x00AA00);

  std::string path = dir.file("history.png");
  plot_charts_png(path, {single, empty}, 700, 300);
  Decoded d = decode_png(read_bytes(path));
  CHECK(d.width == 700);
  CHECK(d.height == 300);
  CHECK(d.rgb == c.rgb());
  CHECK_THROWS_WITH_AS(plot_charts_png(path, {}, 700, 300), doctest::Contains((path + ": plot: no charts").c_str()),
                       Error);
  CHECK_THROWS_WITH_AS(plot_charts_png(path, {single, empty}, 200, 300),
                       doctest::Contains((path + ": plot: 200x300 is too small").c_str()), Error);
}

TEST_CASE("report: confusion matrix CSV text") {
  TempDir dir;
  std::string path = dir.file("confusion.csv");
  write_confusion_csv(path, {"ants", "be,es", "say \"hi\""}, {{5, 1, 0}, {2, 7, 1}, {0, 0, 12}});
  std::string text(std::istreambuf_iterator<char>(std::ifstream(path).rdbuf()), {});
  CHECK(text ==
        "true/predicted,ants,\"be,es\",\"say \"\"hi\"\"\"\n"
        "ants,5,1,0\n"
        "\"be,es\",2,7,1\n"
        "\"say \"\"hi\"\"\",0,0,12\n");
  CHECK_THROWS_WITH_AS(write_confusion_csv(path, {"a", "b"}, {{1, 2}}),
                       doctest::Contains((path + ": confusion matrix: 2 classes but 1 rows").c_str()), Error);
  CHECK_THROWS_WITH_AS(write_confusion_csv(path, {"a", "b"}, {{1, 2}, {3}}),
                       doctest::Contains("row 1 ('b') has 1 counts, expected 2"), Error);
  CHECK_THROWS_WITH_AS(write_confusion_csv(path, {"a"}, {{-1}}), doctest::Contains("is negative (-1)"), Error);
}

TEST_CASE("report: confusion heat map") {
  TempDir dir;
  std::vector<std::string> classes = {"ants", "bees", "a very long class name indeed"};
  std::vector<std::vector<int64_t>> counts = {{30, 10, 0}, {0, 0, 0}, {1, 2, 97}};
  ConfusionLayout at;
  Canvas c = render_confusion(classes, counts, &at);
  REQUIRE(at.cell > 20);
  auto corner = [&](int t, int p) { return c.pixel(at.left + p * at.cell + 1, at.top + t * at.cell + 1); };
  CHECK(corner(0, 0) == heat_color(0.75));
  CHECK(corner(0, 1) == heat_color(0.25));
  CHECK(corner(1, 1) == heat_color(0));  // a class never seen: all cells empty, not a division by zero
  CHECK(corner(2, 2) == heat_color(0.97));
  CHECK(heat_color(0) == 0xF7FBFF);
  CHECK(heat_color(1) == 0x08306B);
  // The counts are written in the cells: white on dark cells, dark on light ones.
  auto ink = [&](int t, int p, uint32_t color) {
    return count_color(c, color, at.left + p * at.cell, at.top + t * at.cell, at.left + (p + 1) * at.cell,
                       at.top + (t + 1) * at.cell);
  };
  CHECK(ink(2, 2, 0xFFFFFF) > 10);
  CHECK(ink(0, 1, kTextColor) > 10);
  CHECK(ink(1, 0, kTextColor) > 5);  // "0"
  // Class names sit left of the grid; the long one is shortened and does not run into the picture's edge.
  CHECK(count_color(c, kTextColor, 0, at.top + 2 * at.cell, at.left - 1, at.top + 3 * at.cell) > 20);
  CHECK(count_color(c, kTextColor, 0, at.top, 4, at.top + 3 * at.cell) == 0);

  std::string path = dir.file("confusion.png");
  write_confusion_png(path, classes, counts);
  Decoded d = decode_png(read_bytes(path));
  CHECK(d.width == c.width());
  CHECK(d.rgb == c.rgb());
  // Many classes: small cells, no crash, still one coloured cell per pair.
  std::vector<std::string> many(300, "class");
  std::vector<std::vector<int64_t>> diag(300, std::vector<int64_t>(300, 0));
  for (int i = 0; i < 300; ++i) diag[i][i] = i;
  Canvas big = render_confusion(many, diag, &at);
  CHECK(at.cell >= 2);
  CHECK(big.pixel(at.left + 299 * at.cell, at.top + 299 * at.cell) == heat_color(1));
  CHECK(big.pixel(at.left, at.top) == heat_color(0));  // row 0 has no samples
}
