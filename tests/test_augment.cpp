// Augmentation geometry against hand-computed expectations: Keras ImageDataGenerator's affine transform
// (shift, rotation, zoom, shear, their composition, fill_mode "nearest"), torchvision's RandomResizedCrop
// parameters (sizes, bounds, rounding, the fallback) and flip, and the eval / train pipelines built from them.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "loaders/augment.h"
#include "support/test_util.h"

using namespace tl;

using tl::test::error_of;

namespace {

Image random_image(Rng& rng, int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (uint8_t& b : image.rgb) b = static_cast<uint8_t>(rng.below(256));
  return image;
}

// Every channel holds value(row, col) (channel c adds 40 * c), a pattern whose bilinear interpolation is exact.
template <class F>
Image pattern_image(int width, int height, F value) {
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int r = 0; r < height; ++r)
    for (int c = 0; c < width; ++c)
      for (int ch = 0; ch < 3; ++ch)
        image.rgb[(static_cast<size_t>(r) * width + c) * 3 + ch] = static_cast<uint8_t>(value(r, c) + 40 * ch);
  return image;
}

bool same_image(const Image& a, const Image& b) {
  return a.width == b.width && a.height == b.height && a.rgb == b.rgb;
}

// The ramp 10 r + 3 c (+ 40 per channel) sampled at an input coordinate, clamped to the image as fill_mode
// "nearest" does: bilinear interpolation of a linear function is the function itself.
double ramp_at(double r, double c, int width, int height) {
  r = std::fmin(std::fmax(r, 0.0), height - 1.0);
  c = std::fmin(std::fmax(c, 0.0), width - 1.0);
  return 10 * r + 3 * c;
}
const auto kRamp = [](int r, int c) { return 10 * r + 3 * c; };

// Checks apply_affine on the ramp against `input_coordinate(r, c)` computed independently. Exact, except that
// an expected value within 1e-9 of a rounding tie may go either way (the tie itself is floating-point noise).
template <class F>
void check_against_ramp(const Image& out, int width, int height, F input_coordinate) {
  int mismatches = 0;
  for (int r = 0; r < height; ++r) {
    for (int c = 0; c < width; ++c) {
      auto [ri, ci] = input_coordinate(r, c);
      double v = ramp_at(ri, ci, width, height);
      for (int ch = 0; ch < 3; ++ch) {
        double e = v + 40 * ch;
        int got = out.at(c, r, ch);
        bool tie = std::fabs(e - std::floor(e) - 0.5) < 1e-9;
        bool ok = tie ? (got == std::floor(e) || got == std::ceil(e)) : got == std::floor(e + 0.5);
        if (!ok && ++mismatches <= 5) MESSAGE("(r ", r, ", c ", c, ", ch ", ch, "): got ", got, ", expected ", e);
      }
    }
  }
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("apply_affine: a pure shift by whole pixels, with the edge repeated (fill_mode nearest)") {
  Rng rng(1);
  Image in = random_image(rng, 9, 7);
  AffineParams p;
  p.tx = 2;   // rows: output row r reads input row r + 2
  p.ty = -3;  // columns: output column c reads input column c - 3
  Image out = apply_affine(in, p);
  bool exact = true;
  for (int r = 0; r < 7; ++r)
    for (int c = 0; c < 9; ++c)
      for (int ch = 0; ch < 3; ++ch)
        exact = exact && out.at(c, r, ch) == in.at(std::max(c - 3, 0), std::min(r + 2, 6), ch);
  CHECK(exact);
  // The identity leaves every byte alone.
  CHECK(same_image(apply_affine(in, AffineParams{}), in));
}

TEST_CASE("apply_affine: rotations by 90 degrees about the centre permute pixels exactly") {
  // 3x3, rows 1 2 3 / 4 5 6 / 7 8 9. Output (r, c) reads input (o + cos (r-o) - sin (c-o), o + sin (r-o) + cos (c-o))
  // = (2 - c, r) at 90 degrees: the first column 1 4 7 becomes the first row 7 4 1.
  Image in = pattern_image(3, 3, [](int r, int c) { return 1 + 3 * r + c; });
  AffineParams p;
  p.theta_degrees = 90;
  Image out = apply_affine(in, p);
  const int expected[3][3] = {{7, 4, 1}, {8, 5, 2}, {9, 6, 3}};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) CHECK(out.at(c, r, 0) == expected[r][c]);
  CHECK(out.at(0, 0, 2) == 7 + 80);

  // An even side (centre between pixels) and an asymmetric random pattern: out(r, c) = in(n-1-c, r); -90 is the
  // inverse permutation, and four quarter turns give the image back.
  Rng rng(2);
  Image square = random_image(rng, 6, 6);
  Image turned = apply_affine(square, p);
  bool exact = true;
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 6; ++c)
      for (int ch = 0; ch < 3; ++ch) exact = exact && turned.at(c, r, ch) == square.at(r, 5 - c, ch);
  CHECK(exact);
  AffineParams back;
  back.theta_degrees = -90;
  CHECK(same_image(apply_affine(turned, back), square));
  Image four = square;
  for (int i = 0; i < 4; ++i) four = apply_affine(four, p);
  CHECK(same_image(four, square));
}

TEST_CASE("apply_affine: zoom about the centre, in and out") {
  // 8x8 ramp 10 r + 3 c, centre (3.5, 3.5). zx = zy = 2 samples at 3.5 + 2 (x - 3.5): the picture shrinks to half
  // size and the border repeats the edge pixels.
  Image in = pattern_image(8, 8, kRamp);
  AffineParams out2;
  out2.zx = out2.zy = 2;
  Image small = apply_affine(in, out2);
  CHECK(small.at(0, 0, 0) == 0);   // (-3.5, -3.5) clamps to pixel (0, 0)
  CHECK(small.at(7, 7, 0) == 91);  // (10.5, 10.5) clamps to (7, 7): 70 + 21
  CHECK(small.at(3, 3, 0) == 33);  // (2.5, 2.5): 25 + 7.5 = 32.5, rounded half up
  CHECK(small.at(4, 4, 0) == 59);  // (4.5, 4.5): 45 + 13.5 = 58.5
  CHECK(small.at(4, 3, 0) == 39);  // row 3 -> 2.5, column 4 -> 4.5: 25 + 13.5 = 38.5
  check_against_ramp(small, 8, 8, [](int r, int c) { return std::pair{3.5 + 2 * (r - 3.5), 3.5 + 2 * (c - 3.5)}; });

  // zx = zy = 0.5: a 2x enlargement of the centre.
  AffineParams in2;
  in2.zx = in2.zy = 0.5;
  Image big = apply_affine(in, in2);
  CHECK(big.at(0, 0, 0) == 23);  // (1.75, 1.75): 17.5 + 5.25 = 22.75
  CHECK(big.at(7, 7, 0) == 68);  // (5.25, 5.25): 52.5 + 15.75 = 68.25
  check_against_ramp(big, 8, 8, [](int r, int c) { return std::pair{3.5 + 0.5 * (r - 3.5), 3.5 + 0.5 * (c - 3.5)}; });

  // Zoom on one axis only: zx scales rows, zy columns.
  AffineParams rows_only;
  rows_only.zx = 2;
  Image tall = apply_affine(in, rows_only);
  check_against_ramp(tall, 8, 8, [](int r, int c) { return std::pair{3.5 + 2 * (r - 3.5), double(c)}; });
}

TEST_CASE("apply_affine: shear and the Keras composition order rotation * shift * shear * zoom") {
  const int w = 11, h = 9;  // odd and unequal sides: centre (4, 5)
  Image in = pattern_image(w, h, kRamp);
  const double kDeg = 3.14159265358979323846 / 180;
  const double o_r = 4, o_c = 5;

  AffineParams shear;
  shear.shear_degrees = 30;
  check_against_ramp(apply_affine(in, shear), w, h, [&](int r, int c) {
    return std::pair{o_r + (r - o_r) - std::sin(30 * kDeg) * (c - o_c), o_c + std::cos(30 * kDeg) * (c - o_c)};
  });

  // All at once. The matrix product applies to the offset from the centre right to left: zoom first, then shear,
  // then the shift, then the rotation.
  AffineParams all;
  all.theta_degrees = 25;
  all.tx = 1.5;
  all.ty = -2;
  all.shear_degrees = 10;
  all.zx = 1.2;
  all.zy = 0.9;
  check_against_ramp(apply_affine(in, all), w, h, [&](int r, int c) {
    double dr = all.zx * (r - o_r), dc = all.zy * (c - o_c);         // zoom
    dr = dr - std::sin(10 * kDeg) * dc, dc = std::cos(10 * kDeg) * dc;  // shear
    dr += all.tx, dc += all.ty;                                       // shift
    double t = 25 * kDeg;
    return std::pair{o_r + std::cos(t) * dr - std::sin(t) * dc, o_c + std::sin(t) * dr + std::cos(t) * dc};
  });
}

TEST_CASE("random_affine_params: ranges, independence of zx and zy, and the order of draws") {
  Augmentation a;
  a.rotation_degrees = 20;
  a.height_shift = 0.1;
  a.width_shift = 0.25;
  a.shear_degrees = 5;
  a.zoom = 0.2;
  Rng rng(9);
  double lo[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9}, hi[6] = {-1e9, -1e9, -1e9, -1e9, -1e9, -1e9};
  int zx_ne_zy = 0;
  for (int i = 0; i < 2000; ++i) {
    AffineParams p = random_affine_params(a, 200, 50, rng);  // width 200, height 50
    double v[6] = {p.theta_degrees, p.tx, p.ty, p.shear_degrees, p.zx, p.zy};
    for (int k = 0; k < 6; ++k) lo[k] = std::min(lo[k], v[k]), hi[k] = std::max(hi[k], v[k]);
    zx_ne_zy += p.zx != p.zy;
  }
  // Each uniform range is covered (2000 draws come within 2% of both ends) and never left.
  const double bound[6][2] = {{-20, 20}, {-5, 5}, {-50, 50}, {-5, 5}, {0.8, 1.2}, {0.8, 1.2}};
  for (int k = 0; k < 6; ++k) {
    CHECK(lo[k] >= bound[k][0]);
    CHECK(hi[k] <= bound[k][1]);
    CHECK(lo[k] < bound[k][0] + 0.02 * (bound[k][1] - bound[k][0]));
    CHECK(hi[k] > bound[k][1] - 0.02 * (bound[k][1] - bound[k][0]));
  }
  CHECK(zx_ne_zy == 2000);

  // Only non-zero ranges draw: with zoom alone, the first two numbers of the stream are zx and zy.
  Augmentation zoom_only;
  zoom_only.zoom = 0.3;
  Rng expected(17), got(17);
  AffineParams p = random_affine_params(zoom_only, 10, 10, got);
  CHECK(p.theta_degrees == 0);
  CHECK(p.tx == 0);
  CHECK(p.ty == 0);
  CHECK(p.shear_degrees == 0);
  const double z_lo = 1 - 0.3, z_hi = 1 + 0.3;
  CHECK(p.zx == z_lo + (z_hi - z_lo) * expected.uniform());
  CHECK(p.zy == z_lo + (z_hi - z_lo) * expected.uniform());
  CHECK(got.next_u64() == expected.next_u64());
}

TEST_CASE("random_resized_crop_box: torchvision's sizes, rounding and positions") {
  Augmentation a;
  // Fixed scale and ratio: area 0.5 * 200 * 100 at ratio 2: w = round(sqrt(20000)) = 141, h = round(sqrt(5000)) = 71.
  a.scale_min = a.scale_max = 0.5;
  a.ratio_min = a.ratio_max = 2;
  Rng rng(4);
  CropBox box = random_resized_crop_box(200, 100, a, rng);
  CHECK(box.width == 141);
  CHECK(box.height == 71);

  // Python rounds halves to even: a 5x5 image at scale 0.25 and ratio 1 gives sides round(2.5) = 2.
  a.scale_min = a.scale_max = 0.25;
  a.ratio_min = a.ratio_max = 1;
  box = random_resized_crop_box(5, 5, a, rng);
  CHECK(box.width == 2);
  CHECK(box.height == 2);

  // A 50x50 crop of 100x100: the position is uniform over [0, 50] inclusive in both axes.
  int min_top = 100, max_top = -1, min_left = 100, max_left = -1;
  for (int i = 0; i < 2000; ++i) {
    box = random_resized_crop_box(100, 100, a, rng);
    REQUIRE(box.width == 50);
    REQUIRE(box.height == 50);
    min_top = std::min(min_top, box.top), max_top = std::max(max_top, box.top);
    min_left = std::min(min_left, box.left), max_left = std::max(max_left, box.left);
  }
  CHECK(min_top == 0);
  CHECK(max_top == 50);
  CHECK(min_left == 0);
  CHECK(max_left == 50);
}

TEST_CASE("random_resized_crop_box: default parameters stay inside the image and cover their ranges") {
  Augmentation a;  // scale (0.08, 1), ratio (3/4, 4/3)
  Rng rng(5);
  double min_scale = 1, max_scale = 0, min_log_ratio = 1, max_log_ratio = -1;
  int whole = 0;
  for (int i = 0; i < 3000; ++i) {
    CropBox b = random_resized_crop_box(333, 250, a, rng);
    REQUIRE(b.width > 0);
    REQUIRE(b.height > 0);
    REQUIRE(b.left >= 0);
    REQUIRE(b.top >= 0);
    REQUIRE(b.left + b.width <= 333);
    REQUIRE(b.top + b.height <= 250);
    double s = double(b.width) * b.height / (333.0 * 250.0), lr = std::log(double(b.width) / b.height);
    min_scale = std::min(min_scale, s), max_scale = std::max(max_scale, s);
    min_log_ratio = std::min(min_log_ratio, lr), max_log_ratio = std::max(max_log_ratio, lr);
    whole += b.width == 333 && b.height == 250;
  }
  // Sides are rounded to whole pixels, so scale and ratio can leave their ranges by that much (<= 2%/1% here).
  CHECK(min_scale >= 0.08 * 0.98);
  CHECK(min_scale < 0.09);
  CHECK(max_scale > 0.95);
  CHECK(min_log_ratio >= std::log(3.0 / 4.0) - 0.02);
  CHECK(min_log_ratio < std::log(3.0 / 4.0) + 0.02);
  CHECK(max_log_ratio <= std::log(4.0 / 3.0) + 0.02);
  CHECK(max_log_ratio > std::log(4.0 / 3.0) - 0.02);
  // The fallback (whole image here, its ratio 1.33 being allowed) needs 10 misses in a row: rare.
  CHECK(whole < 30);
}

TEST_CASE("random_resized_crop_box: the fallback center-crops to the nearest allowed ratio") {
  Augmentation a;
  Rng rng(6);
  // 100x2: any crop of >= 8% of the area at ratio <= 4/3 is taller than 2 rows, so all 10 tries fail; the
  // fallback keeps the height and takes width round(2 * 4/3) = 3, centred: left (100 - 3) // 2 = 48.
  CropBox wide = random_resized_crop_box(100, 2, a, rng);
  CHECK(wide.left == 48);
  CHECK(wide.top == 0);
  CHECK(wide.width == 3);
  CHECK(wide.height == 2);
  CropBox tall = random_resized_crop_box(2, 100, a, rng);
  CHECK(tall.left == 0);
  CHECK(tall.top == 48);
  CHECK(tall.width == 2);
  CHECK(tall.height == 3);
  // A scale range above 1 can never fit: an image whose ratio is allowed is kept whole.
  a.scale_min = 1.5, a.scale_max = 2;
  CropBox whole = random_resized_crop_box(30, 30, a, rng);
  CHECK(whole.left == 0);
  CHECK(whole.top == 0);
  CHECK(whole.width == 30);
  CHECK(whole.height == 30);
}

TEST_CASE("random_resized_crop and flip: the box resized with PIL's filter; reproducible from the Rng") {
  Rng data(7);
  Image in = random_image(data, 61, 47);
  Augmentation a;
  Rng r1(100), r2(100), r3(101);
  Image out = random_resized_crop(in, 24, a, r1);
  CHECK(out.width == 24);
  CHECK(out.height == 24);
  CropBox box = random_resized_crop_box(61, 47, a, r2);
  CHECK(same_image(out, resize_bilinear(crop(in, box), 24, 24)));
  CHECK(same_image(random_resized_crop(in, 24, a, r3), random_resized_crop(in, 24, a, r2)) == false);
  // crop() copies exactly the box and refuses one that leaves the image.
  Image c = crop(in, {3, 5, 4, 2});
  CHECK(c.width == 4);
  CHECK(c.height == 2);
  CHECK(c.at(0, 0, 1) == in.at(3, 5, 1));
  CHECK(c.at(3, 1, 2) == in.at(6, 6, 2));
  CHECK(error_of([&] { crop(in, {58, 0, 4, 2}); }) == "crop: box 4x2 at (58, 0) is not inside the 61x47 image");

  Image flipped = flip_horizontal(in);
  bool exact = true;
  for (int y = 0; y < 47; ++y)
    for (int x = 0; x < 61; ++x)
      for (int ch = 0; ch < 3; ++ch) exact = exact && flipped.at(x, y, ch) == in.at(60 - x, y, ch);
  CHECK(exact);
  CHECK(same_image(flip_horizontal(flipped), in));
}

TEST_CASE("eval_transform: torchvision Resize + CenterCrop, or Keras' exact target size") {
  Rng rng(8);
  Image in = random_image(rng, 300, 200);
  Preprocessing p = torchvision_preprocessing();  // resize 256, crop 224
  CHECK(test::bit_identical(eval_transform(in, p, 224, ResizeMode::ShorterThenCrop), preprocess(in, p)));
  // Other sizes keep the 256/224 proportion: 112 -> 128, 80 -> round(91.43) = 91.
  CHECK(test::bit_identical(eval_transform(in, p, 112, ResizeMode::ShorterThenCrop),
                            image_to_tensor(center_crop(resize_shorter_side(in, 128), 112, 112), p)));
  CHECK(test::bit_identical(eval_transform(in, p, 80, ResizeMode::ShorterThenCrop),
                            image_to_tensor(center_crop(resize_shorter_side(in, 91), 80, 80), p)));
  Tensor exact = eval_transform(in, keras_caffe_preprocessing(), 64, ResizeMode::Exact);
  CHECK(exact.shape() == Shape{3, 64, 64});
  CHECK(test::bit_identical(exact, image_to_tensor(resize_bilinear(in, 64, 64), keras_caffe_preprocessing())));
  CHECK(error_of([&] { eval_transform(in, p, 0, ResizeMode::Exact); }).find("output size") != std::string::npos);
}

TEST_CASE("train_transform: the pieces in order, each draw from the Rng") {
  Rng data(10);
  Image in = random_image(data, 50, 40);
  Preprocessing p = torchvision_preprocessing();

  Augmentation none;
  CHECK_FALSE(none.any());
  Rng r0(1);
  CHECK(test::bit_identical(train_transform(in, none, p, 32, ResizeMode::ShorterThenCrop, r0),
                            eval_transform(in, p, 32, ResizeMode::ShorterThenCrop)));

  // Flip alone at the image's own size: half the seeds flip, exactly.
  Augmentation flip;
  flip.horizontal_flip = true;
  CHECK(flip.any());
  Image square = random_image(data, 12, 12);
  Tensor plain = image_to_tensor(square, p), mirrored = image_to_tensor(flip_horizontal(square), p);
  int flipped = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    Rng r(seed);
    Tensor t = train_transform(square, flip, p, 12, ResizeMode::Exact, r);
    bool is_plain = test::bit_identical(t, plain), is_mirrored = test::bit_identical(t, mirrored);
    CHECK(is_plain != is_mirrored);
    flipped += is_mirrored;
  }
  CHECK(flipped > 160);  // Binomial(400, 0.5): mean 200, sd 10
  CHECK(flipped < 240);

  // Everything: Keras affine, then the crop, then the flip, from one stream in that order.
  Augmentation all;
  all.random_resized_crop = true;
  all.horizontal_flip = true;
  all.rotation_degrees = 15;
  all.width_shift = 0.1;
  all.zoom = 0.1;
  CHECK(all.any_affine());
  for (uint64_t seed : {3u, 4u, 5u}) {
    Rng r(seed), manual(seed);
    Tensor t = train_transform(in, all, p, 28, ResizeMode::ShorterThenCrop, r);
    CHECK(t.shape() == Shape{3, 28, 28});
    Image step = apply_affine(in, random_affine_params(all, 50, 40, manual));
    step = random_resized_crop(step, 28, all, manual);
    if (manual.uniform() < 0.5) step = flip_horizontal(step);
    CHECK(test::bit_identical(t, image_to_tensor(step, p)));
    Rng again(seed);
    CHECK(test::bit_identical(t, train_transform(in, all, p, 28, ResizeMode::ShorterThenCrop, again)));
  }
  Rng s1(1), s2(2);
  CHECK_FALSE(test::bit_identical(train_transform(in, all, p, 28, ResizeMode::Exact, s1),
                                  train_transform(in, all, p, 28, ResizeMode::Exact, s2)));

  Augmentation bad;
  bad.zoom = 1.5;
  Rng r(1);
  CHECK(error_of([&] { train_transform(in, bad, p, 28, ResizeMode::Exact, r); }).find("zoom range 1.5") !=
        std::string::npos);
  bad = Augmentation{};
  bad.scale_min = 0;
  CHECK(error_of([&] { train_transform(in, bad, p, 28, ResizeMode::Exact, r); }).find("scale (0, 1)") !=
        std::string::npos);
}
