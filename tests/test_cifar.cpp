// CIFAR-10 binary batches written here (no CIFAR files on this machine) and Fashion-MNIST's IDX files as
// 3-channel in-memory images.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "loaders/cifar.h"
#include "loaders/idx.h"
#include "loaders/idx_images.h"
#include "support/temp_dir.h"
#include "support/test_util.h"

using namespace tl;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

using tl::test::error_of;

namespace {

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("cifar") {}
  std::string write(const std::string& name, const Bytes& bytes) const {
    fs::path p = path / name;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return p.string();
  }
};

// One CIFAR record: label, then planes R, G, B of 32x32, row-major. Each byte is random.
struct Record {
  uint8_t label;
  Bytes planes;  // 3072
};

std::vector<Record> random_records(Rng& rng, int n) {
  std::vector<Record> out(static_cast<size_t>(n));
  for (Record& r : out) {
    r.label = static_cast<uint8_t>(rng.below(10));
    r.planes.resize(3072);
    for (uint8_t& b : r.planes) b = static_cast<uint8_t>(rng.below(256));
  }
  return out;
}

Bytes batch_bytes(const std::vector<Record>& records) {
  Bytes out;
  for (const Record& r : records) {
    out.push_back(r.label);
    out.insert(out.end(), r.planes.begin(), r.planes.end());
  }
  return out;
}

}  // namespace

TEST_CASE("load_cifar10: pixels, labels, plane order, splits and names from files written here") {
  TempDir dir;
  Rng rng(11);
  std::vector<Record> b1 = random_records(rng, 3), b2 = random_records(rng, 2), test = random_records(rng, 4);
  std::string f1 = dir.write("data_batch_1.bin", batch_bytes(b1));
  dir.write("data_batch_2.bin", batch_bytes(b2));
  std::string ft = dir.write("test_batch.bin", batch_bytes(test));

  DatasetSplits s = load_cifar10(dir.str());
  CHECK(s.classes == std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                              "ship", "truck"});
  REQUIRE(s.train.examples.size() == 5);
  REQUIRE(s.test.examples.size() == 4);
  CHECK(s.val.examples.empty());
  CHECK(s.train.classes == s.classes);

  std::vector<Record> train_records = b1;
  train_records.insert(train_records.end(), b2.begin(), b2.end());
  auto check_split = [](const Dataset& d, const std::vector<Record>& records) {
    for (size_t i = 0; i < records.size(); ++i) {
      const Example& e = d.examples[i];
      REQUIRE(e.image != nullptr);
      CHECK(e.image->width == 32);
      CHECK(e.image->height == 32);
      CHECK(e.label == records[i].label);
      // Pixel (x, y) channel c is byte c * 1024 + y * 32 + x of the planes.
      bool same = true;
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x)
          for (int c = 0; c < 3; ++c) same = same && e.image->at(x, y, c) == records[i].planes[c * 1024 + y * 32 + x];
      CHECK(same);
    }
  };
  check_split(s.train, train_records);
  check_split(s.test, test);
  CHECK(s.train.examples[1].path == f1 + "#1");
  CHECK(s.train.examples[3].path == (dir.path / "data_batch_2.bin").string() + "#0");
  CHECK(s.test.examples[2].path == ft + "#2");

  // A hand-made record: R plane 10, G plane 20, B plane 30 except pixel (x=1, y=0) = (1, 2, 3).
  Record known{7, Bytes(3072)};
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 1024; ++i) known.planes[static_cast<size_t>(c * 1024 + i)] = static_cast<uint8_t>(10 * (c + 1));
  known.planes[1] = 1, known.planes[1024 + 1] = 2, known.planes[2048 + 1] = 3;
  TempDir one;
  one.write("cifar-10-batches-bin/test_batch.bin", batch_bytes({known}));
  one.write("cifar-10-batches-bin/batches.meta.txt",
            {'a', '\n', 'b', '\r', '\n', 'c', '\n', 'd', '\n', 'e', '\n', 'f', '\n', 'g', '\n', 'h', '\n', 'i', '\n',
             'j', '\n', '\n'});
  DatasetSplits k = load_cifar10(one.str());  // finds the sub-folder of the tarball
  CHECK(k.classes == std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"});
  CHECK(k.train.examples.empty());
  REQUIRE(k.test.examples.size() == 1);
  const Image& img = *k.test.examples[0].image;
  CHECK(k.test.examples[0].label == 7);
  CHECK(img.at(0, 0, 0) == 10);
  CHECK(img.at(0, 0, 1) == 20);
  CHECK(img.at(0, 0, 2) == 30);
  CHECK(img.at(1, 0, 0) == 1);
  CHECK(img.at(1, 0, 1) == 2);
  CHECK(img.at(1, 0, 2) == 3);
  CHECK(img.at(0, 1, 0) == 10);

  // limit_per_split keeps the first examples of each split, across batch files.
  DatasetSplits limited = load_cifar10(dir.str(), 4);
  CHECK(limited.train.examples.size() == 4);
  CHECK(limited.train.examples[3].path == (dir.path / "data_batch_2.bin").string() + "#0");
  CHECK(limited.test.examples.size() == 4);
}

TEST_CASE("load_cifar10: errors name the file") {
  TempDir dir;
  Rng rng(3);
  Bytes good = batch_bytes(random_records(rng, 2));
  Bytes cut(good.begin(), good.end() - 1);
  std::string f = dir.write("data_batch_1.bin", cut);
  CHECK(error_of([&] { load_cifar10(dir.str()); }) ==
        "load_cifar10: " + f + " has 6145 bytes, not a whole number of 3073-byte records (1 label + 32x32x3 pixels)");
  dir.write("data_batch_1.bin", {});
  CHECK(error_of([&] { load_cifar10(dir.str()); }).find(" has 0 bytes") != std::string::npos);

  Bytes bad_label = good;
  bad_label[3073] = 10;  // the second record's label
  dir.write("data_batch_1.bin", bad_label);
  CHECK(error_of([&] { load_cifar10(dir.str()); }) == "load_cifar10: " + f + ": record 1 has label 10, outside 0..9");

  TempDir empty;
  CHECK(error_of([&] { load_cifar10(empty.str()); }).find("holds no CIFAR-10 binary batch") != std::string::npos);
  CHECK(error_of([&] { load_cifar10(empty.str() + "/missing"); }).find("does not exist") != std::string::npos);
  dir.write("data_batch_1.bin", good);
  dir.write("batches.meta.txt", {'a', '\n', 'b', '\n'});
  CHECK(error_of([&] { load_cifar10(dir.str()); }).find("batches.meta.txt names 2 classes; CIFAR-10 has 10") !=
        std::string::npos);
}

TEST_CASE("load_idx_image_splits: Fashion-MNIST as 3-channel images with its class names") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz") && !fs::exists(dir + "/train-images-idx3-ubyte")) {
    MESSAGE("skipped: Fashion-MNIST is not installed at ", dir, " (Debian package dataset-fashion-mnist)");
    return;
  }
#ifndef TL_HAVE_ZLIB
  MESSAGE("skipped: the Fashion-MNIST files are gzipped and tl was built without zlib");
  return;
#endif
  DatasetSplits s = load_idx_image_splits(dir, 50);
  CHECK(s.classes == std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                              "Sneaker", "Bag", "Ankle boot"});
  REQUIRE(s.train.examples.size() == 50);
  REQUIRE(s.test.examples.size() == 50);
  CHECK(s.val.examples.empty());
  CHECK(s.train.examples[0].path == dir + "/train-images-idx3-ubyte.gz#0");
  CHECK(s.test.examples[49].path == dir + "/t10k-images-idx3-ubyte.gz#49");
  // Same pixels and labels as the IDX loader (on the smaller test split), gray replicated to R, G, B.
  // Fashion-MNIST's first training image is an ankle boot (9), its first test image too.
  IdxDataset ref = load_idx_dataset(dir, "t10k", 50, 0.0, 1.0);
  CHECK(s.train.examples[0].label == 9);
  CHECK(s.test.examples[0].label == 9);
  for (int i = 0; i < 50; ++i) {
    const Example& e = s.test.examples[static_cast<size_t>(i)];
    CHECK(e.label == static_cast<int64_t>(ref.labels.item(i)));
    REQUIRE(e.image->width == 28);
    REQUIRE(e.image->height == 28);
    bool same = true;
    for (int p = 0; p < 28 * 28; ++p) {
      // ref holds byte / 255 as float; multiply back.
      int byte = static_cast<int>(ref.images.item(i * 784 + p) * 255.0f + 0.5f);
      const int x = p % 28, y = p / 28;
      same = same && e.image->at(x, y, 0) == byte && e.image->at(x, y, 1) == byte && e.image->at(x, y, 2) == byte;
    }
    CHECK(same);
  }
}

TEST_CASE("load_idx_image_splits: digits elsewhere, and errors") {
  TempDir dir;
  auto idx = [](uint8_t ndims, const std::vector<uint32_t>& dims, const Bytes& data) {
    Bytes out = {0, 0, 0x08, ndims};
    for (uint32_t d : dims)
      for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
    out.insert(out.end(), data.begin(), data.end());
    return out;
  };
  Bytes pixels = {0, 50, 100, 150, 200, 250, 1, 2, 3, 4, 5, 6};  // two 2x3 images
  dir.write("train-images-idx3-ubyte", idx(3, {2, 2, 3}, pixels));
  dir.write("train-labels-idx1-ubyte", idx(1, {2}, {3, 8}));
  dir.write("t10k-images-idx3-ubyte", idx(3, {1, 2, 3}, Bytes(pixels.begin(), pixels.begin() + 6)));
  dir.write("t10k-labels-idx1-ubyte", idx(1, {1}, {0}));
  DatasetSplits s = load_idx_image_splits(dir.str(), 5);  // a limit over the count keeps everything
  CHECK(s.classes == std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
  REQUIRE(s.train.examples.size() == 2);
  CHECK(s.test.examples.size() == 1);
  CHECK(s.train.examples[1].label == 8);
  CHECK(s.train.examples[1].path == (dir.path / "train-images-idx3-ubyte").string() + "#1");
  CHECK(load_idx_image_splits(dir.str(), 1).train.examples.size() == 1);
  const Image& second = *s.train.examples[1].image;
  CHECK(second.width == 3);
  CHECK(second.height == 2);
  CHECK(second.at(2, 1, 0) == 6);
  CHECK(second.at(2, 1, 2) == 6);
  CHECK(second.at(1, 0, 1) == 2);

  dir.write("t10k-labels-idx1-ubyte", idx(1, {1}, {10}));
  CHECK(error_of([&] { load_idx_image_splits(dir.str()); }) ==
        "load_idx_image_splits: " + (dir.path / "t10k-labels-idx1-ubyte").string() +
            ": label 10 at index 0 is out of range 0..9");
  dir.write("t10k-labels-idx1-ubyte", idx(1, {2}, {1, 1}));
  CHECK(error_of([&] { load_idx_image_splits(dir.str()); }).find("count mismatch") != std::string::npos);
  fs::remove(dir.path / "t10k-labels-idx1-ubyte");
  CHECK(error_of([&] { load_idx_image_splits(dir.str()); }).find("found neither") != std::string::npos);
}
