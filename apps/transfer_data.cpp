#include "apps/transfer_data.h"

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <vector>

#include "engine/error.h"
#include "engine/rng.h"
#include "loaders/cifar.h"
#include "loaders/idx_images.h"
#include "loaders/image_folder.h"

namespace tl::app {

namespace fs = std::filesystem;

namespace {

bool exists_in(const fs::path& dir, std::initializer_list<const char*> names) {
  std::error_code ec;
  for (const char* n : names)
    if (fs::exists(dir / n, ec)) return true;
  return false;
}

std::string detect_format(const std::string& dir) {
  fs::path d(dir);
  if (exists_in(d, {"data_batch_1.bin", "test_batch.bin", "cifar-10-batches-bin"})) return "cifar10";
  if (exists_in(d, {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte",
                    "t10k-images-idx3-ubyte.gz"}))
    return "idx";
  return "folder";
}

// Moves split.val percent of each class of train (at least one example when the class has two or more) into val,
// chosen by a shuffle seeded from (seed, class); both keep the source order.
void carve_val(DatasetSplits& s, int val_percent, uint64_t seed) {
  std::vector<std::vector<size_t>> by_class(s.classes.size());
  for (size_t i = 0; i < s.train.examples.size(); ++i) {
    int64_t label = s.train.examples[i].label;
    TL_CHECK(label >= 0 && label < static_cast<int64_t>(s.classes.size()), "example ", s.train.examples[i].path,
             " has label ", label, " outside the ", s.classes.size(), " classes");
    by_class[static_cast<size_t>(label)].push_back(i);
  }
  std::vector<bool> to_val(s.train.examples.size(), false);
  for (size_t k = 0; k < by_class.size(); ++k) {
    std::vector<size_t>& idx = by_class[k];
    int64_t n = static_cast<int64_t>(idx.size());
    int64_t take = (n * val_percent * 2 + 100) / 200;
    if (take == 0 && n >= 2 && val_percent > 0) take = 1;
    Rng rng(hash_u64(seed ^ 0x7661ull, k));
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng.below(i)]);
    for (int64_t i = 0; i < take; ++i) to_val[idx[static_cast<size_t>(i)]] = true;
  }
  Dataset train, val;
  train.classes = val.classes = s.classes;
  for (size_t i = 0; i < s.train.examples.size(); ++i)
    (to_val[i] ? val : train).examples.push_back(std::move(s.train.examples[i]));
  s.train = std::move(train);
  s.val = std::move(val);
}

// Keeps `limit` examples spread evenly over the split (a folder's examples are sorted by class, so the first N
// would be one class).
void limit_split(Dataset& d, int64_t limit) {
  int64_t n = static_cast<int64_t>(d.examples.size());
  if (limit <= 0 || n <= limit) return;
  std::vector<Example> kept;
  for (int64_t i = 0; i < limit; ++i) kept.push_back(std::move(d.examples[static_cast<size_t>(i * n / limit)]));
  d.examples = std::move(kept);
}

}  // namespace

SplitPercentages parse_split(const std::string& text) {
  std::vector<int> parts;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    char* end = nullptr;
    long v = std::strtol(item.c_str(), &end, 10);
    TL_CHECK(!item.empty() && end && *end == '\0' && v >= 0 && v <= 100, "--split '", text,
             "': expected three percentages such as 80,10,10");
    parts.push_back(static_cast<int>(v));
  }
  TL_CHECK(parts.size() == 3 && parts[0] > 0 && parts[0] + parts[1] + parts[2] == 100, "--split '", text,
           "': expected three percentages train,val,test adding up to 100, with train > 0");
  return {parts[0], parts[1], parts[2]};
}

DatasetSplits load_transfer_data(const DataOptions& o, std::string* format_used) {
  std::error_code ec;
  TL_CHECK(!o.dir.empty(), "--data DIR is required");
  TL_CHECK(fs::exists(o.dir, ec), "--data ", o.dir, ": no such folder");
  TL_CHECK(fs::is_directory(o.dir, ec), "--data ", o.dir, ": not a folder");
  std::string format = o.format == "auto" ? detect_format(o.dir) : o.format;
  DatasetSplits s;
  if (format == "folder") {
    s = load_image_folder_splits(o.dir, o.split, o.seed);
    for (Dataset* d : {&s.train, &s.val, &s.test}) limit_split(*d, o.limit);
  } else if (format == "cifar10") {
    s = load_cifar10(o.dir, o.limit);
  } else if (format == "idx") {
    s = load_idx_image_splits(o.dir, o.limit);
  } else {
    throw Error(str("--data-format must be auto, folder, idx or cifar10, got '", o.format, "'"));
  }
  TL_CHECK(s.classes.size() >= 2, "--data ", o.dir, ": ", s.classes.size(), " class(es); classification needs at least two");
  TL_CHECK(!s.train.examples.empty(), "--data ", o.dir, ": no training examples");
  if (s.val.examples.empty()) carve_val(s, o.split.val > 0 ? o.split.val : 10, o.seed);
  TL_CHECK(!s.val.examples.empty(), "--data ", o.dir, ": no validation examples (and too few to carve any from train)");
  for (Dataset* d : {&s.train, &s.val, &s.test}) d->classes = s.classes;
  if (format_used) *format_used = format;
  return s;
}

}  // namespace tl::app
