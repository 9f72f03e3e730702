#include <doctest/doctest.h>

#include <unistd.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "loaders/idx.h"
#include "support/temp_dir.h"

#ifdef TL_HAVE_ZLIB
#include <zlib.h>
#endif

using namespace tl;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

// A fresh directory per test, removed afterwards.
struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("idx") {}
};

Bytes idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes out = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(d >> shift));
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Bytes random_bytes(Rng& rng, size_t n) {
  Bytes out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng.below(256));
  return out;
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

#ifdef TL_HAVE_ZLIB
// One gzip member, made with zlib's deflate (windowBits 15 + 16 selects the gzip wrapper).
Bytes gzip(const Bytes& raw) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&z, static_cast<uLong>(raw.size())) + 32);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
#endif

}  // namespace

TEST_CASE("read_idx reads raw images and labels back exactly") {
  TempDir dir;
  Rng rng(3);
  Bytes pixels = random_bytes(rng, 3 * 7 * 5);
  write_file(dir.file("images"), idx_bytes(0x08, {3, 7, 5}, pixels));
  IdxArray images = read_idx(dir.file("images"));
  CHECK(images.dims == std::vector<int64_t>{3, 7, 5});
  CHECK(images.data == pixels);

  Bytes labels = {9, 0, 4};
  write_file(dir.file("labels"), idx_bytes(0x08, {3}, labels));
  IdxArray read_labels = read_idx(dir.file("labels"));
  CHECK(read_labels.dims == std::vector<int64_t>{3});
  CHECK(read_labels.data == labels);
}

TEST_CASE("read_idx rejects wrong magic, unknown and unsupported type codes") {
  TempDir dir;
  const std::string path = dir.file("bad");
  write_file(path, Bytes{0x01, 0x02, 0x08, 0x03, 0, 0, 0, 0});
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path +
                                     ": wrong magic 0x01020803 (an IDX file starts with 00 00 <type> <ndims>, "
                                     "e.g. 0x00000803)").c_str());
  write_file(path, idx_bytes(0x07, {1}, {0}));
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": wrong magic 0x00000701: unknown type code 0x07").c_str());
  write_file(path, Bytes{0, 0, 0x08, 0x00});
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": wrong magic 0x00000800: zero dimensions").c_str());

  const std::array<std::pair<uint8_t, const char*>, 5> unsupported = {
      {{0x09, "0x09 (signed byte)"}, {0x0B, "0x0B (int16)"}, {0x0C, "0x0C (int32)"},
       {0x0D, "0x0D (float32)"}, {0x0E, "0x0E (float64)"}}};
  for (auto [code, text] : unsupported) {
    write_file(path, idx_bytes(code, {2}, {0, 0, 0, 0, 0, 0, 0, 0}));
    CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": unsupported type code " + text +
                                       "; only 0x08 (unsigned byte) is supported").c_str());
  }
}

TEST_CASE("read_idx reports truncated headers and data, and trailing bytes, in raw files") {
  TempDir dir;
  const std::string path = dir.file("images");
  write_file(path, Bytes{0, 0});
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": truncated header: needs 4 bytes of magic, file has 2").c_str());
  write_file(path, Bytes{0, 0, 0x08, 0x03, 0, 0});
  CHECK_THROWS_WITH(read_idx(path),
                    ("read_idx " + path + ": truncated header: 3 dimension sizes need 12 bytes, file has 2").c_str());

  Bytes full = idx_bytes(0x08, {2, 3, 4}, Bytes(24, 7));
  write_file(path, Bytes(full.begin(), full.end() - 4));
  CHECK_THROWS_WITH(read_idx(path),
                    ("read_idx " + path + ": truncated: header says 24 bytes of data, file has 20").c_str());
  Bytes longer = full;
  longer.insert(longer.end(), {1, 2, 3});
  write_file(path, longer);
  CHECK_THROWS_WITH(read_idx(path),
                    ("read_idx " + path + ": trailing bytes: header says 24 bytes of data, file has 27").c_str());
}

TEST_CASE("read_idx rejects absurd sizes and never reserves memory for a header's empty promise") {
  TempDir dir;
  const std::string path = dir.file("huge");
  write_file(path, idx_bytes(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, {}));
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path +
                                     ": absurd size: dims [4294967295,4294967295,4294967295] hold more than "
                                     "2^40 bytes").c_str());
  // 10^12 bytes is under the absurdity cap, and far beyond this machine's memory: were the reader to
  // reserve what the header claims, the allocation would throw std::bad_alloc (overcommit heuristics
  // refuse a request larger than RAM + swap) and the message below would not match.
  write_file(path, idx_bytes(0x08, {1000000, 1000, 1000}, {1, 2, 3}));
  CHECK_THROWS_WITH(read_idx(path),
                    ("read_idx " + path + ": truncated: header says 1000000000000 bytes of data, file has 3").c_str());
}

TEST_CASE("read_idx names the path of a file it cannot open") {
  TempDir dir;
  const std::string path = dir.file("missing");
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": cannot open (No such file or directory)").c_str());
}

#ifdef TL_HAVE_ZLIB
TEST_CASE("read_idx reads gzipped files back exactly, including multi-member gzip") {
  TempDir dir;
  Rng rng(5);
  Bytes pixels = random_bytes(rng, 4 * 9 * 6);
  Bytes raw = idx_bytes(0x08, {4, 9, 6}, pixels);
  write_file(dir.file("images.gz"), gzip(raw));
  IdxArray images = read_idx(dir.file("images.gz"));
  CHECK(images.dims == std::vector<int64_t>{4, 9, 6});
  CHECK(images.data == pixels);

  // gzip -d reads concatenated members as one stream; so do we.
  Bytes first(raw.begin(), raw.begin() + 50), second(raw.begin() + 50, raw.end());
  Bytes two_members = gzip(first);
  Bytes tail = gzip(second);
  two_members.insert(two_members.end(), tail.begin(), tail.end());
  write_file(dir.file("two.gz"), two_members);
  IdxArray again = read_idx(dir.file("two.gz"));
  CHECK(again.dims == std::vector<int64_t>{4, 9, 6});
  CHECK(again.data == pixels);
}

TEST_CASE("read_idx reports truncated data and trailing bytes inside gzip") {
  TempDir dir;
  const std::string path = dir.file("labels.gz");
  Bytes full = idx_bytes(0x08, {10}, Bytes(10, 3));
  write_file(path, gzip(Bytes(full.begin(), full.end() - 3)));
  CHECK_THROWS_WITH(read_idx(path),
                    ("read_idx " + path + ": truncated: header says 10 bytes of data, file has 7").c_str());
  Bytes longer = full;
  longer.insert(longer.end(), {1, 2});
  write_file(path, gzip(longer));
  CHECK_THROWS_WITH(read_idx(path),
                    ("read_idx " + path + ": trailing bytes: header says 10 bytes of data, file has 12").c_str());
  // A header claiming 10^12 bytes over a tiny gzip stream: reserved memory is capped by what the
  // compressed bytes could hold (see the raw twin above for why a big reserve would fail this check).
  write_file(path, gzip(idx_bytes(0x08, {1000000, 1000, 1000}, {1, 2, 3})));
  CHECK_THROWS_WITH(read_idx(path),
                    ("read_idx " + path + ": truncated: header says 1000000000000 bytes of data, file has 3").c_str());
}

TEST_CASE("read_idx reports corrupt gzip streams with the path") {
  TempDir dir;
  const std::string path = dir.file("corrupt.gz");
  Rng rng(9);
  Bytes good = gzip(idx_bytes(0x08, {50, 20}, random_bytes(rng, 1000)));

  Bytes bad_crc = good;
  bad_crc[bad_crc.size() - 8] ^= 0xFF;  // the CRC-32 of the gzip trailer
  write_file(path, bad_crc);
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": corrupt gzip: incorrect data check").c_str());

  write_file(path, Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)));
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path +
                                     ": corrupt gzip: compressed stream ends early (truncated .gz file)").c_str());

  Bytes bad_method = good;
  bad_method[2] = 7;  // compression method: only 8 (deflate) exists
  write_file(path, bad_method);
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": corrupt gzip: unknown compression method").c_str());

  Bytes garbage_after = good;
  garbage_after.insert(garbage_after.end(), {'j', 'u', 'n', 'k'});
  write_file(path, garbage_after);
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path + ": corrupt gzip: incorrect header check").c_str());
}
#else
TEST_CASE("read_idx says a gzipped file needs zlib") {
  TempDir dir;
  const std::string path = dir.file("images.gz");
  write_file(path, Bytes{0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03});
  CHECK_THROWS_WITH(read_idx(path), ("read_idx " + path +
                                     ": file is gzip-compressed but tl was built without zlib (decompress it "
                                     "with gunzip, or rebuild with zlib)").c_str());
}
#endif

TEST_CASE("load_idx_dataset normalises images, keeps labels and honours the limit") {
  TempDir dir;
  // 4 images of 2x3; pixel values chosen to cover 0 and 255.
  Bytes pixels(4 * 2 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 11);
  pixels[5] = 255;
  write_file(dir.file("train-images-idx3-ubyte"), idx_bytes(0x08, {4, 2, 3}, pixels));
  write_file(dir.file("train-labels-idx1-ubyte"), idx_bytes(0x08, {4}, {3, 9, 0, 7}));
  const double mean = 0.2860, std = 0.3530;

  IdxDataset all = load_idx_dataset(dir.path.string(), "train", 0, mean, std);
  CHECK(all.images.shape() == Shape{4, 1, 2, 3});
  CHECK(all.images.dtype() == DType::F32);
  CHECK(all.labels.shape() == Shape{4});
  CHECK(all.labels.dtype() == DType::I64);
  CHECK(all.labels.to_vector() == std::vector<double>{3, 9, 0, 7});
  for (size_t i = 0; i < pixels.size(); ++i) {
    // Same float arithmetic as PyTorch's x.float() / 255 then (x - mean) / std: exact equality.
    float expected = (static_cast<float>(pixels[i]) / 255.0f - static_cast<float>(mean)) / static_cast<float>(std);
    CHECK(all.images.data<float>()[i] == expected);
  }
  CHECK(all.images.data<float>()[0] == doctest::Approx(-mean / std).epsilon(1e-6));
  CHECK(all.images.data<float>()[5] == doctest::Approx((1 - mean) / std).epsilon(1e-6));

  IdxDataset first_two = load_idx_dataset(dir.path.string(), "train", 2, mean, std);
  CHECK(first_two.images.shape() == Shape{2, 1, 2, 3});
  CHECK(first_two.labels.to_vector() == std::vector<double>{3, 9});
  CHECK(first_two.images.item(11) == all.images.item(11));
  IdxDataset beyond = load_idx_dataset(dir.path.string(), "train", 100, mean, std);
  CHECK(beyond.images.shape() == Shape{4, 1, 2, 3});
}

TEST_CASE("load_idx_dataset checks split, files, counts and label range") {
  TempDir dir;
  const std::string d = dir.path.string();
  CHECK_THROWS_WITH(load_idx_dataset(d, "test", 0, 0, 1),
                    "load_idx_dataset: split must be \"train\" or \"t10k\", got \"test\"");
  CHECK_THROWS_WITH(load_idx_dataset(d, "t10k", 0, 0, 1),
                    ("load_idx_dataset: found neither " + dir.file("t10k-images-idx3-ubyte") + " nor " +
                     dir.file("t10k-images-idx3-ubyte.gz")).c_str());

  write_file(dir.file("t10k-images-idx3-ubyte"), idx_bytes(0x08, {3, 2, 2}, Bytes(12, 1)));
  write_file(dir.file("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {2}, {1, 2}));
  CHECK_THROWS_WITH(load_idx_dataset(d, "t10k", 0, 0, 1),
                    ("load_idx_dataset: count mismatch: " + dir.file("t10k-images-idx3-ubyte") + " has 3 images but " +
                     dir.file("t10k-labels-idx1-ubyte") + " has 2 labels").c_str());

  write_file(dir.file("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {3}, {1, 2, 10}));
  CHECK_THROWS_WITH(load_idx_dataset(d, "t10k", 0, 0, 1),
                    ("load_idx_dataset: " + dir.file("t10k-labels-idx1-ubyte") +
                     ": label 10 at index 2 is out of range 0..9").c_str());

  write_file(dir.file("t10k-labels-idx1-ubyte"), idx_bytes(0x08, {3, 1}, {1, 2, 3}));
  CHECK_THROWS_WITH(load_idx_dataset(d, "t10k", 0, 0, 1),
                    ("load_idx_dataset: " + dir.file("t10k-labels-idx1-ubyte") +
                     ": expected labels [N], got dims [3,1]").c_str());
  CHECK_THROWS_WITH(load_idx_dataset(d, "t10k", 0, 0, 0),
                    "load_idx_dataset: need a finite mean and a positive std, got mean 0 std 0");
}

#ifdef TL_HAVE_ZLIB
TEST_CASE("load_idx_dataset falls back to the .gz twin of a missing raw file") {
  TempDir dir;
  write_file(dir.file("train-images-idx3-ubyte.gz"), gzip(idx_bytes(0x08, {2, 1, 1}, {0, 255})));
  write_file(dir.file("train-labels-idx1-ubyte"), idx_bytes(0x08, {2}, {5, 6}));
  IdxDataset data = load_idx_dataset(dir.path.string(), "train", 0, 0.0, 1.0);
  CHECK(data.images.to_vector() == std::vector<double>{0.0, 1.0});
  CHECK(data.labels.to_vector() == std::vector<double>{5, 6});
}
#endif

TEST_CASE("the real Fashion-MNIST files: 60000 train / 10000 test, 28x28, 6000 per class in train") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-labels-idx1-ubyte.gz")) {
    MESSAGE("skipped: Fashion-MNIST is not installed at ", dir, " (Debian package dataset-fashion-mnist)");
    return;
  }
#ifndef TL_HAVE_ZLIB
  MESSAGE("skipped: the Fashion-MNIST files are gzipped and tl was built without zlib");
  return;
#endif
  IdxArray train_images = read_idx(dir + "/train-images-idx3-ubyte.gz");
  CHECK(train_images.dims == std::vector<int64_t>{60000, 28, 28});
  IdxArray train_labels = read_idx(dir + "/train-labels-idx1-ubyte.gz");
  REQUIRE(train_labels.dims == std::vector<int64_t>{60000});
  std::array<int, 10> per_class{};
  for (uint8_t label : train_labels.data) {
    REQUIRE(label < 10);
    ++per_class[label];
  }
  for (int c = 0; c < 10; ++c) CHECK_MESSAGE(per_class[static_cast<size_t>(c)] == 6000, "class ", c);

  IdxArray test_images = read_idx(dir + "/t10k-images-idx3-ubyte.gz");
  CHECK(test_images.dims == std::vector<int64_t>{10000, 28, 28});
  IdxDataset test = load_idx_dataset(dir, "t10k", 0, 0.2860, 0.3530);
  CHECK(test.images.shape() == Shape{10000, 1, 28, 28});
  CHECK(test.labels.shape() == Shape{10000});
  for (double label : test.labels.to_vector()) REQUIRE((label >= 0 && label <= 9));
  // The dataset's published pixel mean, 0.2860, is what the normalisation constant comes from:
  // after normalising, the mean over the test set is close to zero (the test mean is 0.2868).
  double sum = 0;
  const float* x = test.images.data<float>();
  for (int64_t i = 0; i < test.images.numel(); ++i) sum += x[i];
  CHECK(std::abs(sum / static_cast<double>(test.images.numel())) < 0.01);
}
