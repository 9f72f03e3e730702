#include "loaders/augment.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace tl {

namespace {

constexpr double kPi = 3.14159265358979323846;

double uniform(Rng& rng, double lo, double hi) { return lo + (hi - lo) * rng.uniform(); }

// Python's round() for the non-negative values here: halves to even (nearbyint in the default rounding mode).
int round_half_even(double v) { return static_cast<int>(std::nearbyint(v)); }

void check_size(const char* who, int size) {
  TL_CHECK(size > 0 && size <= kMaxImageSide, who, ": output size must be in 1..", kMaxImageSide, ", got ", size);
}

void check_augmentation(const Augmentation& a) {
  auto finite = [](double v) { return std::isfinite(v); };
  TL_CHECK(finite(a.scale_min) && finite(a.scale_max) && a.scale_min > 0 && a.scale_min <= a.scale_max,
           "augmentation: RandomResizedCrop scale (", a.scale_min, ", ", a.scale_max,
           ") must satisfy 0 < min <= max");
  TL_CHECK(finite(a.ratio_min) && finite(a.ratio_max) && a.ratio_min > 0 && a.ratio_min <= a.ratio_max,
           "augmentation: RandomResizedCrop ratio (", a.ratio_min, ", ", a.ratio_max,
           ") must satisfy 0 < min <= max");
  TL_CHECK(finite(a.rotation_degrees) && a.rotation_degrees >= 0, "augmentation: rotation range ",
           a.rotation_degrees, " must be a non-negative number of degrees");
  TL_CHECK(finite(a.width_shift) && finite(a.height_shift) && a.width_shift >= 0 && a.height_shift >= 0 &&
               a.width_shift <= 1 && a.height_shift <= 1,
           "augmentation: width/height shift ", a.width_shift, " / ", a.height_shift,
           " must be fractions of the image in [0, 1]");
  TL_CHECK(finite(a.shear_degrees) && a.shear_degrees >= 0, "augmentation: shear range ", a.shear_degrees,
           " must be a non-negative number of degrees");
  TL_CHECK(finite(a.zoom) && a.zoom >= 0 && a.zoom < 1, "augmentation: zoom range ", a.zoom,
           " must be in [0, 1) (zoom factors are drawn from [1 - zoom, 1 + zoom])");
}

// 3x3 homogeneous matrices in (row, column) coordinates.
struct Mat3 {
  double m[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
};

Mat3 operator*(const Mat3& a, const Mat3& b) {
  Mat3 c;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      c.m[i][j] = 0;
      for (int k = 0; k < 3; ++k) c.m[i][j] += a.m[i][k] * b.m[k][j];
    }
  }
  return c;
}

Mat3 make(double a, double b, double c, double d, double e, double f) {
  Mat3 r;
  r.m[0][0] = a, r.m[0][1] = b, r.m[0][2] = c;
  r.m[1][0] = d, r.m[1][1] = e, r.m[1][2] = f;
  return r;
}

}  // namespace

bool Augmentation::any_affine() const {
  return rotation_degrees != 0 || width_shift != 0 || height_shift != 0 || shear_degrees != 0 || zoom != 0;
}

bool Augmentation::any() const { return random_resized_crop || horizontal_flip || any_affine(); }

Image eval_geometry(const Image& image, int size, ResizeMode mode) {
  check_size("eval_transform", size);
  if (mode == ResizeMode::Exact) return resize_bilinear(image, size, size);
  // torchvision's recipe at 224 is Resize(256) + CenterCrop(224); other sizes keep the 256/224 proportion.
  int shorter = static_cast<int>(std::lround(size * 256.0 / 224.0));
  return center_crop(resize_shorter_side(image, shorter), size, size);
}

Tensor eval_transform(const Image& image, const Preprocessing& p, int size, ResizeMode mode) {
  return image_to_tensor(eval_geometry(image, size, mode), p);
}

CropBox random_resized_crop_box(int width, int height, const Augmentation& a, Rng& rng) {
  check_augmentation(a);
  TL_CHECK(width > 0 && height > 0, "random_resized_crop: invalid image size ", width, "x", height);
  const double area = static_cast<double>(width) * height;
  const double log_ratio_min = std::log(a.ratio_min), log_ratio_max = std::log(a.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    double target_area = area * uniform(rng, a.scale_min, a.scale_max);
    double aspect = std::exp(uniform(rng, log_ratio_min, log_ratio_max));
    int w = round_half_even(std::sqrt(target_area * aspect));
    int h = round_half_even(std::sqrt(target_area / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      CropBox box;
      box.top = static_cast<int>(rng.below(static_cast<uint64_t>(height - h + 1)));
      box.left = static_cast<int>(rng.below(static_cast<uint64_t>(width - w + 1)));
      box.width = w;
      box.height = h;
      return box;
    }
  }
  // Fallback: the whole image, center-cropped to the allowed ratio nearest to its own.
  CropBox box;
  double in_ratio = static_cast<double>(width) / height;
  if (in_ratio < a.ratio_min) {
    box.width = width;
    box.height = std::clamp(round_half_even(width / a.ratio_min), 1, height);
  } else if (in_ratio > a.ratio_max) {
    box.height = height;
    box.width = std::clamp(round_half_even(height * a.ratio_max), 1, width);
  } else {
    box.width = width;
    box.height = height;
  }
  box.top = (height - box.height) / 2;
  box.left = (width - box.width) / 2;
  return box;
}

Image crop(const Image& image, const CropBox& box) {
  TL_CHECK(box.width > 0 && box.height > 0 && box.left >= 0 && box.top >= 0 && box.left + box.width <= image.width &&
               box.top + box.height <= image.height,
           "crop: box ", box.width, "x", box.height, " at (", box.left, ", ", box.top, ") is not inside the ",
           image.width, "x", image.height, " image");
  Image out;
  out.width = box.width;
  out.height = box.height;
  out.rgb.resize(static_cast<size_t>(box.width) * box.height * 3);
  const size_t row_bytes = static_cast<size_t>(box.width) * 3;
  for (int y = 0; y < box.height; ++y) {
    const uint8_t* src = image.rgb.data() + (static_cast<size_t>(box.top + y) * image.width + box.left) * 3;
    std::copy(src, src + row_bytes, out.rgb.data() + static_cast<size_t>(y) * row_bytes);
  }
  return out;
}

Image random_resized_crop(const Image& image, int size, const Augmentation& a, Rng& rng) {
  check_size("random_resized_crop", size);
  return resize_bilinear(crop(image, random_resized_crop_box(image.width, image.height, a, rng)), size, size);
}

Image flip_horizontal(const Image& image) {
  Image out = image;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        out.rgb[(static_cast<size_t>(y) * image.width + x) * 3 + c] = image.at(image.width - 1 - x, y, c);
      }
    }
  }
  return out;
}

AffineParams random_affine_params(const Augmentation& a, int width, int height, Rng& rng) {
  check_augmentation(a);
  AffineParams p;
  if (a.rotation_degrees != 0) p.theta_degrees = uniform(rng, -a.rotation_degrees, a.rotation_degrees);
  if (a.height_shift != 0) p.tx = uniform(rng, -a.height_shift, a.height_shift) * height;
  if (a.width_shift != 0) p.ty = uniform(rng, -a.width_shift, a.width_shift) * width;
  if (a.shear_degrees != 0) p.shear_degrees = uniform(rng, -a.shear_degrees, a.shear_degrees);
  if (a.zoom != 0) {
    p.zx = uniform(rng, 1 - a.zoom, 1 + a.zoom);
    p.zy = uniform(rng, 1 - a.zoom, 1 + a.zoom);
  }
  return p;
}

Image apply_affine(const Image& image, const AffineParams& p) {
  TL_CHECK(image.width > 0 && image.height > 0 &&
               image.rgb.size() == static_cast<size_t>(image.width) * image.height * 3,
           "apply_affine: invalid image ", image.width, "x", image.height, " with ", image.rgb.size(), " bytes");
  TL_CHECK(std::isfinite(p.theta_degrees) && std::isfinite(p.tx) && std::isfinite(p.ty) &&
               std::isfinite(p.shear_degrees) && std::isfinite(p.zx) && std::isfinite(p.zy),
           "apply_affine: non-finite parameters");
  // keras_preprocessing.apply_affine_transform: rotation, then shift, then shear, then zoom, composed by
  // right-multiplication, about the centre; the result maps output coordinates to input coordinates.
  Mat3 m;
  double theta = p.theta_degrees * kPi / 180, shear = p.shear_degrees * kPi / 180;
  if (p.theta_degrees != 0) m = m * make(std::cos(theta), -std::sin(theta), 0, std::sin(theta), std::cos(theta), 0);
  if (p.tx != 0 || p.ty != 0) m = m * make(1, 0, p.tx, 0, 1, p.ty);
  if (p.shear_degrees != 0) m = m * make(1, -std::sin(shear), 0, 0, std::cos(shear), 0);
  if (p.zx != 1 || p.zy != 1) m = m * make(p.zx, 0, 0, 0, p.zy, 0);
  const int h = image.height, w = image.width;
  const double o_r = (h - 1) / 2.0, o_c = (w - 1) / 2.0;
  const Mat3 t = make(1, 0, o_r, 0, 1, o_c) * m * make(1, 0, -o_r, 0, 1, -o_c);

  Image out;
  out.width = w;
  out.height = h;
  out.rgb.resize(image.rgb.size());
  for (int r = 0; r < h; ++r) {
    for (int c = 0; c < w; ++c) {
      // fill_mode "nearest": a coordinate outside the image reads the edge, i.e. is clamped to it.
      double ri = std::clamp(t.m[0][0] * r + t.m[0][1] * c + t.m[0][2], 0.0, double(h - 1));
      double ci = std::clamp(t.m[1][0] * r + t.m[1][1] * c + t.m[1][2], 0.0, double(w - 1));
      int r0 = static_cast<int>(std::floor(ri)), c0 = static_cast<int>(std::floor(ci));
      int r1 = std::min(r0 + 1, h - 1), c1 = std::min(c0 + 1, w - 1);
      double fr = ri - r0, fc = ci - c0;
      for (int ch = 0; ch < 3; ++ch) {
        double top = (1 - fc) * image.at(c0, r0, ch) + fc * image.at(c1, r0, ch);
        double bottom = (1 - fc) * image.at(c0, r1, ch) + fc * image.at(c1, r1, ch);
        double v = (1 - fr) * top + fr * bottom;
        out.rgb[(static_cast<size_t>(r) * w + c) * 3 + ch] = static_cast<uint8_t>(std::clamp(std::floor(v + 0.5), 0.0, 255.0));
      }
    }
  }
  return out;
}

Tensor train_transform(const Image& image, const Augmentation& a, const Preprocessing& p, int size, ResizeMode mode,
                       Rng& rng) {
  check_augmentation(a);
  check_size("train_transform", size);
  Image affine;
  const Image* source = &image;
  if (a.any_affine()) {
    affine = apply_affine(image, random_affine_params(a, image.width, image.height, rng));
    source = &affine;
  }
  Image shaped = a.random_resized_crop ? random_resized_crop(*source, size, a, rng) : eval_geometry(*source, size, mode);
  if (a.horizontal_flip && rng.uniform() < 0.5) shaped = flip_horizontal(shaped);
  return image_to_tensor(shaped, p);
}

}  // namespace tl
