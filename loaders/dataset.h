#pragma once
// A labelled image dataset as the loaders hand it out: class names plus examples that are either files to
// decode (image folders) or pixels already in memory (CIFAR-10, IDX). Splits are plain datasets sharing the
// class list; the batch loader decodes and transforms the examples.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loaders/image.h"

namespace tl {

// One labelled image: a file to decode, or pixels already in memory.
struct Example {
  std::string path;                    // file path, or "<dataset file>#<index>" for in-memory sources
  std::shared_ptr<const Image> image;  // null for files
  int64_t label = 0;
};

struct Dataset {
  std::vector<std::string> classes;
  std::vector<Example> examples;
};

// test may be empty (and val too, for sources that come without one).
struct DatasetSplits {
  std::vector<std::string> classes;
  Dataset train, val, test;
};

struct SplitPercentages {
  int train = 80, val = 10, test = 10;
};

}  // namespace tl
