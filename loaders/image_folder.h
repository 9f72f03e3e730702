#pragma once
// Image folders in torchvision's ImageFolder layout (root/<class>/<file>), and their train/val/test splits:
// either given as train/ val/ test/ sub-folders (the PyTorch tutorial's hymenoptera layout, Keras'
// train/ validation/) or made from one folder of classes by a seeded per-class shuffle.
#include <cstdint>
#include <string>
#include <vector>

#include "loaders/dataset.h"

namespace tl {

// torchvision's IMG_EXTENSIONS that we can be asked about: .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp.
// (.gif is not among them: torchvision's ImageFolder leaves GIFs out, and so do we unless asked.)
const std::vector<std::string>& default_image_extensions();

// root/<class>/<file>: class names sorted, files sorted (byte order, as Python's sorted()), hidden entries
// (names starting with '.') skipped, nested folders inside a class ignored, and only files whose extension
// is in `extensions` (case-insensitive; with or without the dot; empty: default_image_extensions()).
// Labels are class indices. Errors name the folder: missing root, no class folder, a single class, an
// empty class folder.
Dataset scan_image_folder(const std::string& root, const std::vector<std::string>& extensions = {});

// root with a train/ sub-folder: train from it, val from val/ (or validation/, valid/) and test from test/
// when present (their classes must equal train's; absent ones stay empty). Otherwise root holds the class
// folders and each class is split by a shuffle seeded from (seed, class index) into round(n * val%) val,
// round(n * test%) test and the rest train; each split keeps the folder's sorted order.
DatasetSplits load_image_folder_splits(const std::string& root, SplitPercentages split, uint64_t seed,
                                       const std::vector<std::string>& extensions = {});

}  // namespace tl
