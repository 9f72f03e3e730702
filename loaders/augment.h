#pragma once
// Training-time augmentation in the two styles people bring: torchvision (RandomResizedCrop, horizontal flip)
// and Keras ImageDataGenerator (rotation, shifts, shear, zoom with fill_mode "nearest"), plus the evaluation
// geometry of each (Resize + CenterCrop, or Keras' target_size). Randomness comes from the Rng passed in:
// torch's and numpy's streams cannot be matched, so the distributions and the geometry are, exactly.
#include "engine/rng.h"
#include "engine/tensor.h"
#include "loaders/image.h"
#include "loaders/transforms.h"

namespace tl {

struct Augmentation {
  bool random_resized_crop = false;  // torchvision RandomResizedCrop(size, scale, ratio)
  double scale_min = 0.08, scale_max = 1.0, ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  bool horizontal_flip = false;  // p = 0.5
  // Keras ImageDataGenerator, fill_mode nearest, applied first: rotation_range in degrees, shifts as fractions
  // of the width / height, shear_range in degrees, zoom_range z meaning [1 - z, 1 + z] per axis.
  double rotation_degrees = 0, width_shift = 0, height_shift = 0, shear_degrees = 0, zoom = 0;
  bool any() const;
  bool any_affine() const;
};

enum class ResizeMode { ShorterThenCrop, Exact };  // torchvision Resize+CenterCrop, or Keras target_size

// Evaluation: ShorterThenCrop: shorter side -> round(size*256/224), center crop size; Exact: resize to size x size.
Tensor eval_transform(const Image& image, const Preprocessing& p, int size, ResizeMode mode);
// Training: Keras affine (if any), then RandomResizedCrop to size (or the eval geometry), then flip, then to tensor.
// Draws from `rng` in this order: theta, tx, ty, shear, zx, zy (each only when its range is non-zero), the crop,
// the flip.
Tensor train_transform(const Image& image, const Augmentation& a, const Preprocessing& p, int size, ResizeMode mode,
                       Rng& rng);

// ---- The pieces, exposed so that their geometry can be tested.

// The eval geometry alone (what eval_transform feeds to image_to_tensor).
Image eval_geometry(const Image& image, int size, ResizeMode mode);

// A crop rectangle in pixels: columns [left, left + width), rows [top, top + height).
struct CropBox {
  int left = 0, top = 0, width = 0, height = 0;
};
// torchvision RandomResizedCrop.get_params: up to 10 tries of an area fraction uniform in [scale_min, scale_max]
// and an aspect ratio log-uniform in [ratio_min, ratio_max], sides rounded half to even, a uniform position;
// when no try fits, the whole image center-cropped to the nearest allowed ratio.
CropBox random_resized_crop_box(int width, int height, const Augmentation& a, Rng& rng);
Image crop(const Image& image, const CropBox& box);  // the box must lie inside the image
// The box cropped and resized to size x size with PIL's bilinear filter (torchvision's resized_crop).
Image random_resized_crop(const Image& image, int size, const Augmentation& a, Rng& rng);
Image flip_horizontal(const Image& image);

// One Keras affine transform, in keras_preprocessing's (row, column) convention: tx moves along rows (a
// fraction of the height once drawn), ty along columns; zx scales rows, zy columns; angles in degrees.
// Output pixel (r, c) samples the input at  O + R(theta) S(tx, ty) Shear(shear) Z(zx, zy) ((r, c) - O),
// O the image centre ((h - 1) / 2, (w - 1) / 2) (current keras-preprocessing; older releases used
// (h / 2 + 0.5, w / 2 + 0.5), a pixel off), sampled bilinearly (order 1) with coordinates clamped to the
// image (fill_mode "nearest"), rounded to 8 bits.
struct AffineParams {
  double theta_degrees = 0, tx = 0, ty = 0, shear_degrees = 0, zx = 1, zy = 1;
};
// ImageDataGenerator.get_random_transform: theta U(-rot, rot), tx U(-hs, hs) * height, ty U(-ws, ws) * width,
// shear U(-s, s), zx and zy independently U(1 - zoom, 1 + zoom).
AffineParams random_affine_params(const Augmentation& a, int width, int height, Rng& rng);
Image apply_affine(const Image& image, const AffineParams& p);

}  // namespace tl
