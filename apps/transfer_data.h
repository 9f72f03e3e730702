#pragma once
// The data side of tl transfer: a folder of class folders (with or without train/ val/ test/), CIFAR-10 binary
// batches or an IDX pair, loaded into train / val / test splits, with a validation split carved out of train
// when the source has none.
#include <cstdint>
#include <string>

#include "loaders/dataset.h"

namespace tl::app {

struct DataOptions {
  std::string dir;
  std::string format = "auto";  // auto | folder | idx | cifar10
  SplitPercentages split;       // for a folder without train/ val/, and the val share carved from train
  uint64_t seed = 1;
  int64_t limit = 0;            // > 0: at most this many examples per split (CIFAR-10, IDX)
};

// "80,10,10" -> percentages; throws naming the text unless three non-negative integers summing to 100 with
// train > 0.
SplitPercentages parse_split(const std::string& text);

// Loads the splits; `format_used` receives the format actually read. Every split of the result shares the class
// list; val is never empty (carved from train, split.val percent of each class by a seeded shuffle, when the source
// has none). Errors name the folder.
DatasetSplits load_transfer_data(const DataOptions& options, std::string* format_used = nullptr);

}  // namespace tl::app
