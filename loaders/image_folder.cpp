#include "loaders/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>

#include "engine/error.h"
#include "engine/rng.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool hidden(const std::string& name) { return !name.empty() && name[0] == '.'; }

std::vector<std::string> normalized_extensions(const std::vector<std::string>& given) {
  if (given.empty()) return default_image_extensions();
  std::vector<std::string> out;
  for (const std::string& e : given) {
    TL_CHECK(!e.empty() && e != ".", "image folder: empty file extension in the extension list");
    out.push_back(lower(e[0] == '.' ? e : "." + e));
  }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

// Names of the entries of `dir` that are not hidden and satisfy `keep`, sorted by bytes like Python's sorted().
std::vector<std::string> sorted_entries(const fs::path& dir, const std::function<bool(const fs::directory_entry&)>& keep) {
  std::vector<std::string> names;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  TL_CHECK(!ec, "image folder ", dir.string(), ": cannot list (", ec.message(), ")");
  for (; it != end; it.increment(ec)) {
    TL_CHECK(!ec, "image folder ", dir.string(), ": cannot list (", ec.message(), ")");
    std::string name = it->path().filename().string();
    if (!hidden(name) && keep(*it)) names.push_back(name);
  }
  TL_CHECK(!ec, "image folder ", dir.string(), ": cannot list (", ec.message(), ")");
  std::sort(names.begin(), names.end());
  return names;
}

bool is_dir(const fs::directory_entry& e) {
  std::error_code ec;
  return e.is_directory(ec);  // follows symlinks, as os.scandir(...).is_dir() does
}

bool has_extension(const std::string& name, const std::vector<std::string>& extensions) {
  std::string n = lower(name);
  for (const std::string& e : extensions) {
    if (n.size() > e.size() && n.compare(n.size() - e.size(), e.size(), e) == 0) return true;
  }
  return false;
}

void check_same_classes(const std::string& root, const char* split, const Dataset& d, const Dataset& train) {
  TL_CHECK(d.classes == train.classes, "image folder ", root, ": ", split, "/ has classes [", join(d.classes),
           "] but train/ has [", join(train.classes), "]; they must be the same folders");
}

// Python's round(n * percent / 100) for these non-negative integers, halves up (the exact ties are rare and
// their direction immaterial; what matters is that it is deterministic).
int64_t rounded_share(int64_t n, int percent) { return (n * percent * 2 + 100) / 200; }

}  // namespace

const std::vector<std::string>& default_image_extensions() {
  static const std::vector<std::string> extensions = {".jpg", ".jpeg", ".png",  ".ppm", ".bmp",
                                                      ".pgm", ".tif",  ".tiff", ".webp"};
  return extensions;
}

Dataset scan_image_folder(const std::string& root, const std::vector<std::string>& extensions) {
  const std::vector<std::string> allowed = normalized_extensions(extensions);
  std::error_code ec;
  TL_CHECK(fs::exists(root, ec), "image folder ", root, ": does not exist");
  TL_CHECK(fs::is_directory(root, ec), "image folder ", root, ": is not a folder");

  Dataset data;
  data.classes = sorted_entries(root, is_dir);
  TL_CHECK(!data.classes.empty(), "image folder ", root,
           ": no class folders (expected root/<class>/<image files>, e.g. train/ants/1.jpg)");
  TL_CHECK(data.classes.size() >= 2, "image folder ", root, ": only one class folder ('", data.classes[0],
           "'); classification needs at least two");
  for (size_t k = 0; k < data.classes.size(); ++k) {
    const fs::path class_dir = fs::path(root) / data.classes[k];
    std::vector<std::string> files = sorted_entries(class_dir, [&](const fs::directory_entry& e) {
      std::error_code file_ec;
      return e.is_regular_file(file_ec) && has_extension(e.path().filename().string(), allowed);
    });
    TL_CHECK(!files.empty(), "image folder ", root, ": class folder '", data.classes[k],
             "' has no image files (extensions ", join(allowed), ")");
    for (const std::string& f : files) {
      Example ex;
      ex.path = (class_dir / f).string();
      ex.label = static_cast<int64_t>(k);
      data.examples.push_back(std::move(ex));
    }
  }
  return data;
}

DatasetSplits load_image_folder_splits(const std::string& root, SplitPercentages split, uint64_t seed,
                                       const std::vector<std::string>& extensions) {
  std::error_code ec;
  TL_CHECK(fs::is_directory(root, ec), "image folder ", root, ": ",
           fs::exists(root, ec) ? "is not a folder" : "does not exist");
  DatasetSplits out;
  const fs::path base(root);
  if (fs::is_directory(base / "train", ec)) {
    out.train = scan_image_folder((base / "train").string(), extensions);
    out.classes = out.train.classes;
    for (const char* name : {"val", "validation", "valid"}) {
      if (!fs::is_directory(base / name, ec)) continue;
      out.val = scan_image_folder((base / name).string(), extensions);
      check_same_classes(root, name, out.val, out.train);
      break;
    }
    if (fs::is_directory(base / "test", ec)) {
      out.test = scan_image_folder((base / "test").string(), extensions);
      check_same_classes(root, "test", out.test, out.train);
    }
    return out;
  }

  TL_CHECK(split.train > 0 && split.val >= 0 && split.test >= 0 && split.train + split.val + split.test == 100,
           "image folder ", root, ": split percentages train ", split.train, " / val ", split.val, " / test ",
           split.test, " must be non-negative, with train > 0, and add up to 100");
  Dataset all = scan_image_folder(root, extensions);
  out.classes = all.classes;
  out.train.classes = out.val.classes = out.test.classes = all.classes;
  size_t begin = 0;
  for (size_t k = 0; k < all.classes.size(); ++k) {
    size_t end = begin;
    while (end < all.examples.size() && all.examples[end].label == static_cast<int64_t>(k)) ++end;
    const int64_t n = static_cast<int64_t>(end - begin);
    int64_t n_val = rounded_share(n, split.val), n_test = rounded_share(n, split.test);
    // Every class keeps at least one training example.
    while (n - n_val - n_test < 1) (n_test > 0 ? n_test : n_val) -= 1;
    // Fisher-Yates over the class's positions, seeded per class so one class's files do not move another's.
    std::vector<size_t> order(static_cast<size_t>(n));
    for (size_t i = 0; i < order.size(); ++i) order[i] = begin + i;
    Rng rng(hash_u64(seed, k));
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    std::vector<size_t> val(order.begin(), order.begin() + n_val);
    std::vector<size_t> test(order.begin() + n_val, order.begin() + n_val + n_test);
    std::vector<size_t> train(order.begin() + n_val + n_test, order.end());
    for (auto [picked, target] : {std::pair{&train, &out.train}, std::pair{&val, &out.val}, std::pair{&test, &out.test}}) {
      std::sort(picked->begin(), picked->end());
      for (size_t i : *picked) target->examples.push_back(all.examples[i]);
    }
    begin = end;
  }
  return out;
}

}  // namespace tl
