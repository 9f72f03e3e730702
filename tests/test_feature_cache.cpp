#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/rng.h"
#include "loaders/dataset.h"
#include "loaders/feature_cache.h"
#include "loaders/npy.h"
#include "support/test_util.h"
#include "weights/safetensors.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("feature_cache") {}
  std::vector<std::string> listing(const std::string& sub) const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path / sub)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::remove(path);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Redirects std::cerr for the scope, so the messages the cache prints can be checked.
struct CaptureCerr {
  std::ostringstream text;
  std::streambuf* old;
  CaptureCerr() : old(std::cerr.rdbuf(text.rdbuf())) {}
  ~CaptureCerr() { std::cerr.rdbuf(old); }
  std::string str() const { return text.str(); }
};

// Files img_<i>.bin holding "image <i>" (different sizes and contents), as an image folder would list them.
Dataset file_dataset(const TempDir& dir, int n) {
  fs::create_directories(dir.path / "images");
  Dataset d;
  d.classes = {"a", "b"};
  for (int i = 0; i < n; ++i) {
    std::string p = (dir.path / "images" / ("img_" + std::to_string(i) + ".bin")).string();
    write_bytes(p, "image " + std::to_string(i));
    d.examples.push_back({p, nullptr, i % 2});
  }
  return d;
}

// A stand-in for the frozen base: features from the example's bytes, plus the generation (which run
// computed the row) so a test can tell a recomputed row from a reused one. Counts calls and rows.
struct Extractor {
  const Dataset* data;
  int64_t width = 3;
  float generation = 1;
  int calls = 0;
  std::vector<int64_t> rows;
  std::vector<size_t> chunk_sizes;

  std::function<Tensor(const std::vector<int64_t>&)> fn() {
    return [this](const std::vector<int64_t>& idx) { return compute(idx); };
  }
  Tensor compute(const std::vector<int64_t>& idx) {
    ++calls;
    chunk_sizes.push_back(idx.size());
    Tensor out = Tensor::empty({static_cast<int64_t>(idx.size()), width});
    for (size_t k = 0; k < idx.size(); ++k) {
      rows.push_back(idx[k]);
      const Example& e = data->examples[idx[k]];
      std::string bytes = e.image ? std::string(e.image->rgb.begin(), e.image->rgb.end()) : read_bytes(e.path);
      double sum = 0;
      for (unsigned char c : bytes) sum += c;
      for (int64_t j = 0; j < width; ++j)
        out.data<float>()[k * width + j] = j == width - 1 ? generation : static_cast<float>(sum / (7.3 + j) + bytes.size());
    }
    return out;
  }
  void reset(float new_generation) {
    generation = new_generation;
    calls = 0;
    rows.clear();
    chunk_sizes.clear();
  }
};

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

bool rows_identical(const Tensor& a, int64_t ra, const Tensor& b, int64_t rb) {
  int64_t d = a.size(1);
  return d == b.size(1) && std::memcmp(a.data<float>() + ra * d, b.data<float>() + rb * d, sizeof(float) * d) == 0;
}

}  // namespace

TEST_CASE("feature cache: the first get computes every row in chunks, a second one computes none") {
  TempDir dir;
  Dataset data = file_dataset(dir, 70);
  Extractor ex{&data};
  std::string cache_dir = dir.file("cache");
  int64_t recomputed = -1;
  Tensor first = FeatureCache(cache_dir, "w1", "t1").get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 70);
  CHECK(ex.calls == 2);
  CHECK(ex.chunk_sizes == std::vector<size_t>{64, 6});
  std::vector<int64_t> all(70);
  std::iota(all.begin(), all.end(), 0);
  CHECK(sorted(ex.rows) == all);
  REQUIRE(first.shape() == Shape{70, 3});
  // Every row is the one computed for its example (compute once more, straight, to compare).
  Extractor direct{&data};
  CHECK(test::bit_identical(first, direct.compute(all)));

  ex.reset(2);
  FeatureCache fresh(cache_dir, "w1", "t1");
  Tensor second = fresh.get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 0);
  CHECK(ex.calls == 0);
  CHECK(test::bit_identical(second, first));
  auto listing = dir.listing("cache");
  REQUIRE(listing.size() == 1);  // one file, no temporary left behind
  CHECK(cache_dir + "/" + listing[0] == fresh.file_for("train"));
  CHECK(listing[0].size() == std::string("features-").size() + 64 + std::string(".safetensors").size());
  CHECK(listing[0].rfind("features-", 0) == 0);

  // The file is readable by anyone: tensor "features" and per-row identities with the real path, size, mtime.
  SafetensorsFile f = SafetensorsFile::open(fresh.file_for("train"));
  CHECK(test::bit_identical(f.read("features"), first));
  CHECK(f.metadata().at("split") == "train");
  CHECK(f.metadata().at("weights_hash") == "w1");
  CHECK(f.metadata().at("transform") == "t1");
  CHECK(f.metadata().at("rows").find("[\"" + data.examples[3].path + "\",7,") != std::string::npos);
}

TEST_CASE("feature cache: a touched or rewritten file recomputes exactly its row; order and additions are handled") {
  TempDir dir;
  Dataset data = file_dataset(dir, 12);
  Extractor ex{&data};
  FeatureCache cache(dir.file("cache"), "w", "t");
  int64_t recomputed = -1;
  Tensor first = cache.get(data, "train", ex.fn(), &recomputed);
  REQUIRE(recomputed == 12);

  const std::string& p5 = data.examples[5].path;
  fs::last_write_time(p5, fs::last_write_time(p5) + std::chrono::seconds(2));
  write_bytes(data.examples[9].path, "image nine, rewritten");
  ex.reset(2);
  Tensor second = FeatureCache(dir.file("cache"), "w", "t").get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 2);
  CHECK(sorted(ex.rows) == std::vector<int64_t>{5, 9});
  for (int64_t i = 0; i < 12; ++i) {
    CAPTURE(i);
    CHECK(second.data<float>()[i * 3 + 2] == (i == 5 || i == 9 ? 2.0f : 1.0f));  // the generation column
    if (i != 5 && i != 9) CHECK(rows_identical(second, i, first, i));
  }
  CHECK(second.data<float>()[9 * 3] != first.data<float>()[9 * 3]);  // new content, new features

  // Reordered examples reuse their rows by path; a new file is the only row computed.
  Dataset shuffled = data;
  std::reverse(shuffled.examples.begin(), shuffled.examples.end());
  std::string extra = dir.file("images/extra.bin");
  write_bytes(extra, "another image");
  shuffled.examples.push_back({extra, nullptr, 1});
  Extractor ex2{&shuffled, 3, 3};
  Tensor third = cache.get(shuffled, "train", ex2.fn(), &recomputed);
  CHECK(recomputed == 1);
  CHECK(ex2.rows == std::vector<int64_t>{12});
  for (int64_t i = 0; i < 12; ++i) CHECK(rows_identical(third, i, second, 11 - i));
  CHECK(third.data<float>()[12 * 3 + 2] == 3.0f);

  // A subset (the rewritten cache dropped nothing it needs) computes nothing.
  Dataset subset = data;
  subset.examples.resize(4);
  Extractor ex3{&subset};
  Tensor fourth = cache.get(subset, "train", ex3.fn(), &recomputed);
  CHECK(recomputed == 0);
  CHECK(test::bit_identical(fourth, second.slice(0, 4).clone()));
}

TEST_CASE("feature cache: split, weights hash and transform description each select their own file") {
  TempDir dir;
  Dataset data = file_dataset(dir, 5);
  Extractor ex{&data};
  std::string cache_dir = dir.file("cache");
  int64_t recomputed = -1;
  FeatureCache(cache_dir, "w1", "t1").get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 5);
  FeatureCache(cache_dir, "w2", "t1").get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 5);
  FeatureCache(cache_dir, "w1", "t2").get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 5);
  FeatureCache(cache_dir, "w1", "t1").get(data, "val", ex.fn(), &recomputed);
  CHECK(recomputed == 5);
  CHECK(dir.listing("cache").size() == 4);
  FeatureCache(cache_dir, "w1", "t1").get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 0);  // the first key's file was left alone
  // Field boundaries matter: ("w1", "t1") and ("w", "1t1") are different keys.
  CHECK(FeatureCache(cache_dir, "w1", "t1").file_for("train") != FeatureCache(cache_dir, "w", "1t1").file_for("train"));
  CHECK(FeatureCache(cache_dir, "w1", "t1").file_for("train") == FeatureCache(cache_dir, "w1", "t1").file_for("train"));
}

TEST_CASE("feature cache: a corrupt, foreign or inconsistent cache file is reported and ignored") {
  TempDir dir;
  Dataset data = file_dataset(dir, 6);
  Extractor ex{&data};
  FeatureCache cache(dir.file("cache"), "w", "t");
  int64_t recomputed = -1;
  Tensor first = cache.get(data, "train", ex.fn(), &recomputed);
  std::string file = cache.file_for("train");

  auto run = [&](const std::string& expect_in_message) {
    CAPTURE(expect_in_message);
    CaptureCerr err;
    ex.reset(1);
    Tensor again = cache.get(data, "train", ex.fn(), &recomputed);
    CHECK(recomputed == 6);
    CHECK(test::bit_identical(again, first));
    CHECK(err.str().find("feature cache " + file + ": ignored (") != std::string::npos);
    CHECK(err.str().find(expect_in_message) != std::string::npos);
    ex.reset(1);
    cache.get(data, "train", ex.fn(), &recomputed);  // and the file was repaired
    CHECK(recomputed == 0);
  };
  write_bytes(file, "not a safetensors file at all");
  run(file);
  std::string bytes = read_bytes(file);
  write_bytes(file, bytes.substr(0, bytes.size() - 5));  // truncated data
  run("");
  // A valid file whose row list does not match its tensor.
  std::map<std::string, std::string> meta = {{"format", "tl feature cache 1"}, {"split", "train"}, {"weights_hash", "w"},
                                             {"transform", "t"}, {"rows", "[[\"/x\",1,2]]"}};
  write_safetensors(file, {{"features", Tensor::zeros({6, 3})}}, meta);
  run("metadata \"rows\" has 1 entries for 6 feature rows");
  meta["rows"] = "[[\"/x\",1,2],";
  write_safetensors(file, {{"features", Tensor::zeros({1, 3})}}, meta);
  run("invalid JSON");
  // Another key's file under this name (copied by hand) is not trusted.
  FeatureCache(dir.file("cache"), "w", "t").get(data, "val", ex.fn(), &recomputed);
  fs::copy_file(cache.file_for("val"), file, fs::copy_options::overwrite_existing);
  run("written for split \"val\", not \"train\"");
  meta = {{"format", "something else"}};
  write_safetensors(file, {{"features", Tensor::zeros({6, 3})}}, meta);
  run("format is \"something else\"");
}

TEST_CASE("feature cache: features of a new width invalidate every cached row") {
  TempDir dir;
  Dataset data = file_dataset(dir, 5);
  Extractor ex{&data};
  FeatureCache cache(dir.file("cache"), "w", "t");
  int64_t recomputed = -1;
  cache.get(data, "train", ex.fn(), &recomputed);
  write_bytes(data.examples[2].path, "changed, longer");  // a new size: detected even within one mtime tick
  Extractor wide{&data, 4, 2};
  CaptureCerr err;
  Tensor out = cache.get(data, "train", wide.fn(), &recomputed);
  CHECK(recomputed == 5);
  std::string got;
  for (int64_t r : wide.rows) got += std::to_string(r) + " ";
  CHECK(got == "2 0 1 3 4 ");  // the stale row first, then the rest
  Extractor direct{&data, 4, 2};
  CHECK(test::bit_identical(out, direct.compute({0, 1, 2, 3, 4})));  // every row written, none left from the cache
  CHECK(err.str().find("cached features are 3 wide but compute() returns 4") != std::string::npos);
  Extractor none{&data, 4, 3};
  CHECK(test::bit_identical(cache.get(data, "train", none.fn(), &recomputed), out));
  CHECK(recomputed == 0);
}

TEST_CASE("feature cache: in-memory examples are keyed by path and pixel content") {
  TempDir dir;
  Dataset data;
  data.classes = {"x"};
  for (int i = 0; i < 4; ++i) {
    auto img = std::make_shared<Image>();
    img->width = 2;
    img->height = 1;
    img->rgb = {uint8_t(i), 1, 2, 3, 4, uint8_t(5 + i)};
    data.examples.push_back({"data_batch_1.bin#" + std::to_string(i), img, 0});
  }
  Extractor ex{&data};
  FeatureCache cache(dir.file("cache"), "w", "t");
  int64_t recomputed = -1;
  Tensor first = cache.get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 4);

  // Same pixels in a new object: reused. Changed pixels, or the same pixels with another shape: recomputed.
  auto copy = std::make_shared<Image>(*data.examples[0].image);
  data.examples[0].image = copy;
  auto changed = std::make_shared<Image>(*data.examples[1].image);
  changed->rgb[3] = 200;
  data.examples[1].image = changed;
  auto reshaped = std::make_shared<Image>(*data.examples[2].image);
  reshaped->width = 1;
  reshaped->height = 2;
  data.examples[2].image = reshaped;
  ex.reset(2);
  Tensor second = cache.get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 2);
  CHECK(ex.rows == std::vector<int64_t>{1, 2});
  CHECK(rows_identical(second, 0, first, 0));
  CHECK(rows_identical(second, 3, first, 3));
  CHECK(SafetensorsFile::open(cache.file_for("train")).metadata().at("rows").find("\"sha256:") != std::string::npos);
}

TEST_CASE("feature cache: errors from compute() propagate, bad answers are named, an unwritable cache still answers") {
  TempDir dir;
  Dataset data = file_dataset(dir, 3);
  FeatureCache cache(dir.file("cache"), "w", "t");
  auto throws = [](const std::vector<int64_t>&) -> Tensor { throw Error("decode failed: img_1.bin"); };
  CHECK_THROWS_WITH_AS(cache.get(data, "train", throws), "decode failed: img_1.bin", Error);
  CHECK(!fs::exists(cache.file_for("train")));
  auto short_answer = [](const std::vector<int64_t>& idx) { return Tensor::zeros({int64_t(idx.size()) - 1, 2}); };
  CHECK_THROWS_WITH_AS(cache.get(data, "train", short_answer),
                       "feature cache: compute() returned F32[2,2] cpu for 3 examples; expected CPU F32 [3,D]", Error);

  // The cache folder's path is taken by a file: the features still come back, with a message.
  write_bytes(dir.file("blocked"), "x");
  Extractor ex{&data};
  CaptureCerr err;
  int64_t recomputed = -1;
  Tensor out = FeatureCache(dir.file("blocked"), "w", "t").get(data, "train", ex.fn(), &recomputed);
  CHECK(recomputed == 3);
  CHECK(out.shape() == Shape{3, 3});
  CHECK(err.str().find(": not written (") != std::string::npos);

  // A missing file cannot be identified: compute() sees it every time (and reports it as it sees fit).
  data.examples.push_back({dir.file("images/missing.bin"), nullptr, 0});
  auto zeros_for_missing = [&](const std::vector<int64_t>& idx) { return Tensor::zeros({int64_t(idx.size()), 3}); };
  cache.get(data, "train", zeros_for_missing, &recomputed);
  CHECK(recomputed == 4);
  cache.get(data, "train", zeros_for_missing, &recomputed);
  CHECK(recomputed == 1);

  Dataset empty;
  Extractor none{&empty};
  CHECK(cache.get(empty, "empty", none.fn(), &recomputed).shape() == Shape{0, 0});
  CHECK(recomputed == 0);
  CHECK(none.calls == 0);
}

TEST_CASE("export_features_npy: numpy and our reader read back the tensor") {
  TempDir dir;
  Rng rng(7);
  Tensor f = test::random_tensor(rng, {4, 6}, DType::F32, -3, 3);
  std::string path = dir.file("features.npy");
  export_features_npy(path, f);
  CHECK(test::bit_identical(read_npy(path), f));
  if (!fs::exists("/usr/bin/python3") || std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
    MESSAGE("numpy check skipped: /usr/bin/python3 with numpy is not available");
    return;
  }
  // numpy prints each value with repr (shortest round-trip digits); we compare to the same through %.9g -> float.
  std::string cmd = "/usr/bin/python3 -c \"import numpy as np; a = np.load('" + path +
                    "'); print(a.dtype.str, a.shape); print(' '.join(repr(float(x)) for x in a.ravel()))\"";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  std::istringstream in(out);
  std::string dtype, shape;
  std::getline(in, dtype, ' ');
  std::getline(in, shape);
  CHECK(dtype == "<f4");
  CHECK(shape == "(4, 6)");
  for (int64_t i = 0; i < f.numel(); ++i) {
    double v = 0;
    REQUIRE(static_cast<bool>(in >> v));
    CHECK(static_cast<float>(v) == f.data<float>()[i]);  // exact: every F32 is a double
  }
}

TEST_CASE("export_features_csv writes the exact text, quoting paths per RFC 4180") {
  TempDir dir;
  Dataset data;
  data.classes = {"ants", "bees"};
  data.examples = {{"train/ants/a.jpg", nullptr, 0}, {"train/bees/b,c.jpg", nullptr, 1}, {"q\"uote.png", nullptr, 1}};
  Tensor f = Tensor::from_vector({3, 2}, std::vector<float>{0.1f, -2.0f, 1e-8f, 123456792.0f, 0.0f, 1.0f / 3.0f});
  std::string path = dir.file("features.csv");
  export_features_csv(path, f, data);
  CHECK(read_bytes(path) ==
        "path,label,f0,f1\n"
        "train/ants/a.jpg,0,0.100000001,-2\n"
        "\"train/bees/b,c.jpg\",1,9.99999994e-09,123456792\n"
        "\"q\"\"uote.png\",1,0,0.333333343\n");
  // %.9g round-trips: parsing the printed text gives back the same float.
  CHECK(std::strtof("0.333333343", nullptr) == 1.0f / 3.0f);
  CHECK(std::strtof("0.100000001", nullptr) == 0.1f);
  CHECK_THROWS_WITH_AS(export_features_csv(path, Tensor::zeros({2, 2}), data), doctest::Contains("have 2 rows for 3 examples"), Error);
  CHECK_THROWS_WITH_AS(export_features_csv(path, Tensor::zeros({3}), data), doctest::Contains("CPU F32 [N,D]"), Error);
}
