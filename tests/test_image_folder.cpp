// Image folders: the real hymenoptera tree (torchvision ImageFolder's view of it), and temporary trees built
// here for every layout rule and error; seeded per-class splits.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "loaders/image_folder.h"
#include "support/test_util.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

using tl::test::error_of;

namespace {

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("image_folder") {}
  // Creates an (empty) file, and its folders; scanning never opens files.
  std::string touch(const std::string& rel) const {
    fs::path p = path / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p).put('x');
    return p.string();
  }
  void mkdir(const std::string& rel) const { fs::create_directories(path / rel); }
};

std::vector<std::string> names(const Dataset& d) {
  std::vector<std::string> out;
  for (const Example& e : d.examples) out.push_back(fs::path(e.path).filename().string());
  return out;
}

std::map<int64_t, int> per_class(const Dataset& d) {
  std::map<int64_t, int> counts;
  for (const Example& e : d.examples) counts[e.label]++;
  return counts;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

TEST_CASE("scan_image_folder: the real hymenoptera train folder as torchvision's ImageFolder sees it") {
  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  Dataset train = scan_image_folder(data + "/hymenoptera/train");
  CHECK(train.classes == std::vector<std::string>{"ants", "bees"});
  // 245 files, of which the GIF is not among torchvision's extensions.
  REQUIRE(train.examples.size() == 244);
  CHECK(per_class(train) == std::map<int64_t, int>{{0, 123}, {1, 121}});
  std::vector<std::string> files = names(train);
  CHECK(contains(files, "ant photos.jpg"));
  CHECK(contains(files, "formica.jpeg"));
  CHECK_FALSE(contains(files, "imageNotFound.gif"));
  // Class-major, each class sorted by name, paths that exist, labels from the folder.
  for (size_t i = 0; i < train.examples.size(); ++i) {
    const Example& e = train.examples[i];
    CHECK(e.image == nullptr);
    CHECK(fs::is_regular_file(e.path));
    CHECK(fs::path(e.path).parent_path().filename() == train.classes[static_cast<size_t>(e.label)]);
    if (i > 0 && train.examples[i - 1].label == e.label) CHECK(files[i - 1] < files[i]);
    if (i > 0) CHECK(train.examples[i - 1].label <= e.label);
  }

  // Asking for GIFs too brings the placeholder back (labelled ants, as in the official zip).
  std::vector<std::string> with_gif = default_image_extensions();
  with_gif.push_back("gif");
  Dataset all = scan_image_folder(data + "/hymenoptera/train", with_gif);
  REQUIRE(all.examples.size() == 245);
  auto gif = std::find_if(all.examples.begin(), all.examples.end(),
                          [](const Example& e) { return fs::path(e.path).filename() == "imageNotFound.gif"; });
  REQUIRE(gif != all.examples.end());
  CHECK(gif->label == 0);
}

TEST_CASE("load_image_folder_splits: hymenoptera's own train/val layout") {
  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  DatasetSplits s = load_image_folder_splits(data + "/hymenoptera", {}, 7);
  CHECK(s.classes == std::vector<std::string>{"ants", "bees"});
  CHECK(s.train.examples.size() == 244);
  CHECK(s.val.examples.size() == 153);
  CHECK(per_class(s.val) == std::map<int64_t, int>{{0, 70}, {1, 83}});
  CHECK(s.test.examples.empty());
  CHECK(contains(names(s.val), "F.pergan.28(f).jpg"));
  CHECK(s.val.classes == s.classes);
}

TEST_CASE("scan_image_folder: hidden entries, nested folders, other extensions and case") {
  TempDir dir;
  dir.touch("cats/b.jpg");
  dir.touch("cats/A.JPG");       // upper-case extension counts; 'A' sorts before 'b' (byte order)
  dir.touch("cats/c.Png");
  dir.touch("cats/notes.txt");   // not an image extension
  dir.touch("cats/.hidden.jpg");  // hidden file
  dir.touch("cats/nested/d.jpg");  // nested folder: ignored
  dir.touch("dogs/x.webp");
  dir.touch("dogs/y.jpeg");
  dir.touch("dogs/z.gif");  // not a default extension
  dir.touch(".ipynb_checkpoints/e.jpg");  // hidden class folder
  dir.touch("README.jpg");  // a file at the root is no class
  Dataset d = scan_image_folder(dir.str());
  CHECK(d.classes == std::vector<std::string>{"cats", "dogs"});
  CHECK(names(d) == std::vector<std::string>{"A.JPG", "b.jpg", "c.Png", "x.webp", "y.jpeg"});
  CHECK(per_class(d) == std::map<int64_t, int>{{0, 3}, {1, 2}});

  // An explicit list replaces the default one; dots and case do not matter.
  Dataset gifs_and_text = scan_image_folder(dir.str(), {"GIF", ".txt"});
  CHECK(names(gifs_and_text) == std::vector<std::string>{"notes.txt", "z.gif"});
}

TEST_CASE("scan_image_folder: errors name the folder and the problem") {
  TempDir dir;
  std::string missing = (dir.path / "nope").string();
  CHECK(error_of([&] { scan_image_folder(missing); }) == "image folder " + missing + ": does not exist");
  std::string file = dir.touch("file.jpg");
  CHECK(error_of([&] { scan_image_folder(file); }) == "image folder " + file + ": is not a folder");

  // Files but no class folder.
  CHECK(error_of([&] { scan_image_folder(dir.str()); }).find("image folder " + dir.str() + ": no class folders") == 0);
  // A single class.
  dir.touch("ants/1.jpg");
  CHECK(error_of([&] { scan_image_folder(dir.str()); }) ==
        "image folder " + dir.str() + ": only one class folder ('ants'); classification needs at least two");
  // A class folder with nothing usable in it.
  dir.touch("bees/.DS_Store");
  dir.touch("bees/readme.txt");
  dir.mkdir("bees/sub");
  dir.touch("bees/sub/2.jpg");
  CHECK(error_of([&] { scan_image_folder(dir.str()); })
            .find("image folder " + dir.str() + ": class folder 'bees' has no image files (extensions .jpg, .jpeg") == 0);
  dir.touch("bees/2.jpg");
  CHECK(scan_image_folder(dir.str()).examples.size() == 2);
  CHECK(error_of([&] { scan_image_folder(dir.str(), {""}); }).find("empty file extension") != std::string::npos);
}

TEST_CASE("load_image_folder_splits: a folder of classes split per class by a seeded shuffle") {
  TempDir dir;
  const std::map<std::string, int> sizes = {{"a", 20}, {"b", 30}, {"c", 7}};
  for (const auto& [cls, n] : sizes) {
    for (int i = 0; i < n; ++i) dir.touch(cls + "/" + cls + std::to_string(100 + i) + ".png");
  }
  DatasetSplits s = load_image_folder_splits(dir.str(), {80, 10, 10}, 42);
  CHECK(s.classes == std::vector<std::string>{"a", "b", "c"});
  // round(n * 10%) of each class to val and to test, the rest to train: 20 -> 16/2/2, 30 -> 24/3/3,
  // 7 -> round(0.7) = 1 each, 5 train.
  CHECK(per_class(s.train) == std::map<int64_t, int>{{0, 16}, {1, 24}, {2, 5}});
  CHECK(per_class(s.val) == std::map<int64_t, int>{{0, 2}, {1, 3}, {2, 1}});
  CHECK(per_class(s.test) == std::map<int64_t, int>{{0, 2}, {1, 3}, {2, 1}});
  CHECK(s.train.classes == s.classes);
  CHECK(s.test.classes == s.classes);

  // No overlap, nothing lost, and each split keeps the folder's sorted order.
  std::multiset<std::string> seen;
  for (const Dataset* d : {&s.train, &s.val, &s.test}) {
    std::vector<std::string> paths;
    for (const Example& e : d->examples) {
      paths.push_back(e.path);
      seen.insert(e.path);
      CHECK(fs::path(e.path).filename().string()[0] == s.classes[static_cast<size_t>(e.label)][0]);
    }
    CHECK(std::is_sorted(paths.begin(), paths.end()));
  }
  CHECK(seen.size() == 57);
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 57);

  // Deterministic for a seed, different for another.
  DatasetSplits again = load_image_folder_splits(dir.str(), {80, 10, 10}, 42);
  DatasetSplits other = load_image_folder_splits(dir.str(), {80, 10, 10}, 43);
  CHECK(names(again.val) == names(s.val));
  CHECK(names(again.test) == names(s.test));
  CHECK(names(other.val) != names(s.val));

  // Other percentages; a class too small for its shares keeps one training example.
  DatasetSplits half = load_image_folder_splits(dir.str(), {50, 50, 0}, 1);
  CHECK(per_class(half.val) == std::map<int64_t, int>{{0, 10}, {1, 15}, {2, 4}});  // 3.5 rounds up
  CHECK(half.test.examples.empty());
  TempDir tiny;
  tiny.touch("x/1.jpg");
  tiny.touch("y/1.jpg");
  tiny.touch("y/2.jpg");
  DatasetSplits t = load_image_folder_splits(tiny.str(), {1, 50, 49}, 3);
  CHECK(per_class(t.train) == std::map<int64_t, int>{{0, 1}, {1, 1}});

  for (SplitPercentages bad : {SplitPercentages{80, 10, 5}, SplitPercentages{0, 50, 50}, SplitPercentages{110, -5, -5}}) {
    CHECK(error_of([&] { load_image_folder_splits(dir.str(), bad, 1); }).find("must be non-negative") !=
          std::string::npos);
  }
}

TEST_CASE("load_image_folder_splits: train/ with val/ (or validation/) and test/ sub-folders") {
  TempDir dir;
  for (const char* split : {"train", "validation", "test"}) {
    for (const char* cls : {"cat", "dog"}) {
      for (int i = 0; i < 3; ++i) dir.touch(std::string(split) + "/" + cls + "/" + std::to_string(i) + ".jpg");
    }
  }
  DatasetSplits s = load_image_folder_splits(dir.str(), {80, 10, 10}, 5);
  CHECK(s.classes == std::vector<std::string>{"cat", "dog"});
  CHECK(s.train.examples.size() == 6);
  CHECK(s.val.examples.size() == 6);
  CHECK(s.test.examples.size() == 6);
  CHECK(s.val.examples[0].path == (dir.path / "validation" / "cat" / "0.jpg").string());

  // Without val/ and test/, those stay empty (the caller may carve a val split from train).
  TempDir only_train;
  only_train.touch("train/a/1.jpg");
  only_train.touch("train/b/1.jpg");
  DatasetSplits t = load_image_folder_splits(only_train.str(), {}, 0);
  CHECK(t.train.examples.size() == 2);
  CHECK(t.val.examples.empty());
  CHECK(t.test.examples.empty());

  // Different classes in val/ are an error.
  dir.touch("validation/emu/0.jpg");
  CHECK(error_of([&] { load_image_folder_splits(dir.str(), {}, 5); }) ==
        "image folder " + dir.str() +
            ": validation/ has classes [cat, dog, emu] but train/ has [cat, dog]; they must be the same folders");
}
