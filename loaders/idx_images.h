#pragma once
// IDX image/label pairs (MNIST, Fashion-MNIST) as labelled 3-channel images, the gray value replicated into
// R, G and B, so that they go through the same transforms and models as photos.
#include <cstdint>
#include <string>

#include "loaders/dataset.h"

namespace tl {

// "<dir>/train-images-idx3-ubyte" + "train-labels-idx1-ubyte" (raw, else the ".gz" twin) -> train, the
// "t10k-" pair -> test, val empty (carve one from train if needed). Examples are in memory, named
// "<images file>#<index>". Class names are Fashion-MNIST's when the folder (or a file in it) says
// "fashion", else "0".."9". limit_per_split > 0 keeps the first that many of each split. Errors name the
// file (see read_idx), and a count mismatch or a label over 9.
DatasetSplits load_idx_image_splits(const std::string& dir, int64_t limit_per_split = 0);

}  // namespace tl
