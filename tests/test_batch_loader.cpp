// BatchLoader: every example once per epoch, deterministic order and randomness whatever the number of
// workers, bad files skipped (reported once, by path) or fatal, decode counts, and clean teardown mid-epoch.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "loaders/augment.h"
#include "loaders/batch_loader.h"
#include "loaders/image_folder.h"
#include "support/test_util.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

using tl::test::error_of;

namespace {

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("batch_loader") {}
  std::string write(const std::string& rel, const std::string& bytes) const {
    fs::path p = path / rel;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out << bytes;
    return p.string();
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/fixtures/images/" + name; }

// In-memory examples: a 4x3 image whose pixels all hold the example's index (mod 256) and 7 more in green.
Dataset memory_dataset(int n, int classes = 3) {
  Dataset d;
  for (int k = 0; k < classes; ++k) d.classes.push_back("c" + std::to_string(k));
  for (int i = 0; i < n; ++i) {
    auto image = std::make_shared<Image>();
    image->width = 4;
    image->height = 3;
    image->rgb.resize(36);
    for (int p = 0; p < 12; ++p) {
      image->rgb[p * 3] = static_cast<uint8_t>(i % 256);
      image->rgb[p * 3 + 1] = static_cast<uint8_t>((i + 7) % 256);
      image->rgb[p * 3 + 2] = static_cast<uint8_t>(i / 256);
    }
    d.examples.push_back({"mem#" + std::to_string(i), image, i % classes});
  }
  return d;
}

// Raw pixel values as floats, plus one draw of the example's Rng on the first element.
Tensor raw_plus_noise(const Image& image, Rng& rng) {
  Tensor t = Tensor::empty({3, image.height, image.width});
  float* d = t.data<float>();
  const int64_t plane = int64_t(image.width) * image.height;
  for (int c = 0; c < 3; ++c)
    for (int64_t i = 0; i < plane; ++i) d[c * plane + i] = image.rgb[static_cast<size_t>(i) * 3 + c];
  d[0] += static_cast<float>(rng.uniform());
  return t;
}

struct Epoch {
  std::vector<Batch> batches;
  std::vector<int64_t> order;  // all indices, in batch order
};

Epoch run_epoch(BatchLoader& loader, int64_t epoch) {
  Epoch out;
  loader.start_epoch(epoch);
  Batch b;
  while (loader.next(b)) {
    out.order.insert(out.order.end(), b.indices.begin(), b.indices.end());
    out.batches.push_back(b);
  }
  return out;
}

// Captures what is written to std::cerr while alive.
struct CaptureStderr {
  std::ostringstream text;
  std::streambuf* old;
  CaptureStderr() : old(std::cerr.rdbuf(text.rdbuf())) {}
  ~CaptureStderr() { std::cerr.rdbuf(old); }
};

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("BatchLoader: every example exactly once per epoch, in full batches but the last, with its label") {
  Dataset data = memory_dataset(23);
  BatchLoader loader(data, 5, true, 42, 3, raw_plus_noise);
  CHECK(loader.batches_per_epoch() == 5);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    Epoch e = run_epoch(loader, epoch);
    REQUIRE(e.batches.size() == 5);
    for (size_t b = 0; b < 5; ++b) {
      const Batch& batch = e.batches[b];
      const int64_t n = b < 4 ? 5 : 3;
      REQUIRE(batch.images.shape() == Shape{n, 3, 3, 4});
      REQUIRE(batch.labels.shape() == Shape{n});
      CHECK(batch.labels.dtype() == DType::I64);
      for (int64_t row = 0; row < n; ++row) {
        const int64_t index = batch.indices[static_cast<size_t>(row)];
        CHECK(batch.labels.item(row) == index % 3);
        // Row `row` holds that example's pixels: red = index everywhere but the noisy first element.
        CHECK(batch.images.item(row * 36 + 1) == index);
        CHECK(batch.images.item(row * 36 + 12) == index + 7);
      }
    }
    std::vector<int64_t> sorted = e.order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> expected(23);
    for (int i = 0; i < 23; ++i) expected[static_cast<size_t>(i)] = i;
    CHECK(sorted == expected);
  }
  CHECK(loader.decoded_count() == 0);  // in-memory images are not decoded
  CHECK(loader.bad_files().empty());
}

TEST_CASE("BatchLoader: order from (seed, epoch), per-example randomness from (seed, epoch, index)") {
  Dataset data = memory_dataset(40);
  BatchLoader a(data, 8, true, 7, 2, raw_plus_noise), b(data, 8, true, 7, 3, raw_plus_noise);
  BatchLoader other_seed(data, 8, true, 8, 2, raw_plus_noise), in_order(data, 8, false, 7, 2, raw_plus_noise);
  Epoch a1 = run_epoch(a, 1), b1 = run_epoch(b, 1), a2 = run_epoch(a, 2);
  CHECK(a1.order == b1.order);
  CHECK(a1.order != a2.order);
  CHECK(run_epoch(other_seed, 1).order != a1.order);
  std::vector<int64_t> identity(40);
  for (int i = 0; i < 40; ++i) identity[static_cast<size_t>(i)] = i;
  CHECK(run_epoch(in_order, 0).order == identity);
  CHECK(run_epoch(in_order, 5).order == identity);
  // Epoch 1 again: the same order as the first time.
  CHECK(run_epoch(a, 1).order == a1.order);

  // The noise on example i in epoch e is the first draw of Rng(example_seed(seed, e, i)).
  for (const Batch& batch : a2.batches) {
    for (size_t row = 0; row < batch.indices.size(); ++row) {
      const int64_t index = batch.indices[row];
      Rng rng(BatchLoader::example_seed(7, 2, index));
      float expected = static_cast<float>(index % 256) + static_cast<float>(rng.uniform());
      CHECK(batch.images.item(static_cast<int64_t>(row) * 36) == expected);
    }
  }
}

TEST_CASE("BatchLoader: the same batches with 1 and 3 workers, on real files with random augmentation") {
  TempDir dir;
  const std::string photo = read_bytes(fixture("photo_64x48.jpg")), noise = read_bytes(fixture("noise_61x97.png"));
  Dataset data;
  data.classes = {"a", "b"};
  for (int i = 0; i < 9; ++i) {
    std::string path = dir.write("img" + std::to_string(i) + (i % 2 ? ".png" : ".jpg"), i % 2 ? noise : photo);
    data.examples.push_back({path, nullptr, i % 2});
  }
  Augmentation aug;
  aug.random_resized_crop = true;
  aug.horizontal_flip = true;
  aug.rotation_degrees = 10;
  const Preprocessing p = torchvision_preprocessing();
  auto transform = [&](const Image& image, Rng& rng) {
    return train_transform(image, aug, p, 16, ResizeMode::ShorterThenCrop, rng);
  };
  BatchLoader one(data, 4, true, 3, 1, transform), three(data, 4, true, 3, 3, transform, BadFilePolicy::Skip, 1);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    Epoch x = run_epoch(one, epoch), y = run_epoch(three, epoch);
    REQUIRE(x.batches.size() == 3);
    REQUIRE(y.batches.size() == 3);
    for (size_t b = 0; b < 3; ++b) {
      CHECK(x.batches[b].indices == y.batches[b].indices);
      CHECK(test::bit_identical(x.batches[b].images, y.batches[b].images));
      CHECK(test::bit_identical(x.batches[b].labels, y.batches[b].labels));
    }
    // Row 0 of the first batch is exactly the transform of that file with that example's Rng.
    const int64_t index = x.batches[0].indices[0];
    Rng rng(BatchLoader::example_seed(3, epoch, index));
    Tensor expected = transform(decode_image(data.examples[static_cast<size_t>(index)].path), rng);
    CHECK(test::bit_identical(x.batches[0].images.slice(0, 1).reshape({3, 16, 16}), expected));
  }
  CHECK(one.decoded_count() == 18);
  CHECK(three.decoded_count() == 18);
}

TEST_CASE("BatchLoader: bad files are skipped and reported once by path, or fatal") {
  TempDir dir;
  const std::string photo = read_bytes(fixture("photo_64x48.jpg"));
  dir.write("ants/a.jpg", photo);
  const std::string empty = dir.write("ants/b.jpg", "");
  dir.write("ants/c.jpg", photo);
  const std::string text = dir.write("bees/d.jpg", "this is a text file, not a photo\n");
  dir.write("bees/e.jpg", photo);
  const std::string cut = dir.write("bees/f.jpg", photo.substr(0, photo.size() / 2));
  Dataset data = scan_image_folder(dir.path.string());
  REQUIRE(data.examples.size() == 6);
  auto transform = [](const Image& image, Rng&) { return eval_transform(image, Preprocessing{}, 8, ResizeMode::Exact); };

  {
    CaptureStderr captured;
    BatchLoader loader(data, 4, true, 1, 2, transform, BadFilePolicy::Skip);
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      Epoch e = run_epoch(loader, epoch);
      std::vector<int64_t> seen = e.order;
      std::sort(seen.begin(), seen.end());
      CHECK(seen == std::vector<int64_t>{0, 2, 4});
      for (const Batch& b : e.batches) CHECK(b.images.size(0) == static_cast<int64_t>(b.indices.size()));
      CHECK(loader.decoded_count() == 3 * (epoch + 1));  // only the good files decode
    }
    const std::vector<std::string>& bad = loader.bad_files();
    REQUIRE(bad.size() == 3);
    std::vector<std::string> sorted = bad;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted[0] == empty + ": empty file (0 bytes), not an image");
    CHECK(sorted[1].find(text + ": not a JPEG, PNG, BMP or GIF image") == 0);
    CHECK(sorted[2].find(cut + ": cannot decode JPEG image") == 0);
    // Reported once each on stderr, though every epoch met them.
    for (const std::string& entry : bad) CHECK(count_of(captured.text.str(), entry) == 1);
  }

  // A batch whose examples all fail is not emitted. In the order a, b, d, f, c (b, d, f bad): batches of one
  // give {a}, three empty ones, {c}; batches of three give {a, b, d} -> {a} and {f, c} -> {c}.
  Dataset bad_middle;
  bad_middle.classes = data.classes;
  for (size_t i : {0, 1, 3, 5, 2}) bad_middle.examples.push_back(data.examples[i]);
  {
    CaptureStderr quiet;
    BatchLoader loader(bad_middle, 1, false, 1, 2, transform);
    Epoch e = run_epoch(loader, 0);
    REQUIRE(e.batches.size() == 2);
    CHECK(e.order == std::vector<int64_t>{0, 4});
    BatchLoader threes(bad_middle, 3, false, 1, 2, transform);
    Epoch t = run_epoch(threes, 0);
    REQUIRE(t.batches.size() == 2);
    CHECK(t.order == std::vector<int64_t>{0, 4});
  }

  // Fatal: next() throws naming the file, in order; the batches around it still come.
  BatchLoader fatal(data, 1, false, 1, 3, transform, BadFilePolicy::Fatal);
  fatal.start_epoch(0);
  Batch b;
  std::vector<std::string> outcomes;
  for (int i = 0; i < 6; ++i) {
    bool got = false;
    std::string error = error_of([&] { got = fatal.next(b); });
    outcomes.push_back(error.empty() ? (got ? "ok" : "end") : error);
  }
  CHECK(outcomes[0] == "ok");
  CHECK(outcomes[1] == "BatchLoader: bad example " + empty + ": empty file (0 bytes), not an image");
  CHECK(outcomes[2] == "ok");
  CHECK(outcomes[3].find("BatchLoader: bad example " + text + ": not a JPEG") == 0);
  CHECK(outcomes[4] == "ok");
  CHECK(outcomes[5].find("BatchLoader: bad example " + cut + ": cannot decode JPEG image") == 0);
  CHECK_FALSE(fatal.next(b));
}

TEST_CASE("BatchLoader: real photos through eval_transform equal the direct pipeline") {
  std::string root = test::shared_data_dir();
  if (root.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  Dataset val = scan_image_folder(root + "/hymenoptera/val");
  Dataset some;
  some.classes = val.classes;
  for (size_t i = 0; i < val.examples.size(); i += 13) some.examples.push_back(val.examples[i]);  // 12 of 153
  const Preprocessing p = torchvision_preprocessing();
  BatchLoader loader(some, 5, true, 0, 2,
                     [&](const Image& image, Rng&) { return eval_transform(image, p, 64, ResizeMode::ShorterThenCrop); });
  Epoch e = run_epoch(loader, 0);
  REQUIRE(e.batches.size() == 3);
  CHECK(e.batches[2].images.shape() == Shape{2, 3, 64, 64});
  const Batch& first = e.batches[0];
  for (int64_t row = 0; row < 5; ++row) {
    const Example& ex = some.examples[static_cast<size_t>(first.indices[static_cast<size_t>(row)])];
    Tensor direct = eval_transform(decode_image(ex.path), p, 64, ResizeMode::ShorterThenCrop);
    CHECK(test::bit_identical(first.images.slice(row, row + 1).reshape({3, 64, 64}), direct));
    CHECK(first.labels.item(row) == ex.label);
  }
  CHECK(loader.decoded_count() == 12);
}

TEST_CASE("BatchLoader: destroying it mid-epoch, or restarting an epoch, is clean") {
  Dataset data = memory_dataset(200);
  auto slow = [](const Image& image, Rng& rng) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return raw_plus_noise(image, rng);
  };
  auto start = std::chrono::steady_clock::now();
  {
    BatchLoader loader(data, 10, true, 1, 4, slow, BadFilePolicy::Skip, 3);
    loader.start_epoch(0);
    Batch b;
    REQUIRE(loader.next(b));
  }  // workers are busy filling the next batches here
  { BatchLoader never_started(data, 10, true, 1, 4, slow); }
  {
    BatchLoader just_started(data, 10, true, 1, 4, slow);
    just_started.start_epoch(0);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(seconds < 2.0);  // joins finish the examples in flight (a few ms each), nothing more

  // Abandoning an epoch halfway: the next one is whole and matches a fresh loader's.
  BatchLoader loader(data, 10, true, 1, 3, raw_plus_noise);
  loader.start_epoch(0);
  Batch b;
  for (int i = 0; i < 7; ++i) REQUIRE(loader.next(b));
  Epoch restarted = run_epoch(loader, 1);
  BatchLoader fresh(data, 10, true, 1, 1, raw_plus_noise);
  Epoch clean = run_epoch(fresh, 1);
  CHECK(restarted.order == clean.order);
  REQUIRE(restarted.batches.size() == 20);
  for (size_t i = 0; i < 20; ++i) CHECK(test::bit_identical(restarted.batches[i].images, clean.batches[i].images));
}

TEST_CASE("BatchLoader: misuse and inconsistent transforms are errors") {
  Dataset data = memory_dataset(6);
  BatchLoader loader(data, 2, false, 0, 1, raw_plus_noise);
  Batch b;
  CHECK(error_of([&] { loader.next(b); }) == "BatchLoader: call start_epoch() before next()");
  CHECK(error_of([&] { BatchLoader(data, 0, false, 0, 1, raw_plus_noise); }) ==
        "BatchLoader: batch size must be >= 1, got 0");
  CHECK(error_of([&] { BatchLoader(data, 2, false, 0, 0, raw_plus_noise); }) ==
        "BatchLoader: workers must be in 1..256, got 0");
  CHECK(error_of([&] { BatchLoader(data, 2, false, 0, 1, raw_plus_noise, BadFilePolicy::Skip, 0); }) ==
        "BatchLoader: prefetch must be >= 1 batch, got 0");
  Dataset bad_label = data;
  bad_label.examples[4].label = 3;
  CHECK(error_of([&] { BatchLoader(bad_label, 2, false, 0, 1, raw_plus_noise); }) ==
        "BatchLoader: mem#4 has label 3 but the dataset has 3 classes");

  // Example 3 comes out 5 pixels wide instead of 4.
  auto uneven = [](const Image& image, Rng&) {
    return Tensor::zeros({3, image.height, image.rgb[0] == 3 ? 5 : image.width});
  };
  BatchLoader shapes(data, 2, false, 0, 2, uneven);
  shapes.start_epoch(0);
  CHECK(shapes.next(b));
  CHECK(error_of([&] { shapes.next(b); }) ==
        "BatchLoader: mem#3 transformed to [3,3,5] but mem#2 to [3,3,4]; every example must have the same shape");

  Dataset empty;
  BatchLoader nothing(empty, 4, true, 0, 2, raw_plus_noise);
  nothing.start_epoch(0);
  CHECK_FALSE(nothing.next(b));
}
