#include "loaders/cifar.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/error.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kPlane = kCifarSide * kCifarSide;

const std::vector<std::string>& cifar10_names() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<std::string> read_class_names(const fs::path& meta) {
  std::ifstream in(meta);
  TL_CHECK(in, "load_cifar10: cannot open ", meta.string());
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    std::string name = trim(line);
    if (!name.empty()) names.push_back(name);
  }
  TL_CHECK(names.size() == cifar10_names().size(), "load_cifar10: ", meta.string(), " names ", names.size(),
           " classes; CIFAR-10 has ", cifar10_names().size());
  return names;
}

// Appends the records of one batch file to `out`, at most `limit` in total (0: all).
void read_batch(const fs::path& file, int64_t limit, Dataset& out) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(file, ec);
  TL_CHECK(!ec, "load_cifar10: cannot stat ", file.string(), " (", ec.message(), ")");
  TL_CHECK(size > 0 && size % kCifarRecordBytes == 0, "load_cifar10: ", file.string(), " has ", size,
           " bytes, not a whole number of ", kCifarRecordBytes, "-byte records (1 label + 32x32x3 pixels)");
  int64_t records = static_cast<int64_t>(size / kCifarRecordBytes);
  if (limit > 0) records = std::min<int64_t>(records, limit - static_cast<int64_t>(out.examples.size()));
  if (records <= 0) return;
  std::ifstream in(file, std::ios::binary);
  TL_CHECK(in, "load_cifar10: cannot open ", file.string());
  std::vector<uint8_t> bytes(static_cast<size_t>(records * kCifarRecordBytes));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  TL_CHECK(in.gcount() == static_cast<std::streamsize>(bytes.size()), "load_cifar10: ", file.string(),
           ": read ", in.gcount(), " of ", bytes.size(), " bytes");
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* record = bytes.data() + r * kCifarRecordBytes;
    TL_CHECK(record[0] < cifar10_names().size(), "load_cifar10: ", file.string(), ": record ", r, " has label ",
             int(record[0]), ", outside 0..9");
    auto image = std::make_shared<Image>();
    image->width = image->height = kCifarSide;
    image->rgb.resize(static_cast<size_t>(kPlane) * 3);
    // Planar R, G, B -> interleaved HWC.
    for (int64_t i = 0; i < kPlane; ++i) {
      for (int c = 0; c < 3; ++c) image->rgb[static_cast<size_t>(i * 3 + c)] = record[1 + c * kPlane + i];
    }
    Example ex;
    ex.path = file.string() + "#" + std::to_string(r);
    ex.image = std::move(image);
    ex.label = record[0];
    out.examples.push_back(std::move(ex));
  }
}

}  // namespace

DatasetSplits load_cifar10(const std::string& dir, int64_t limit_per_split) {
  TL_CHECK(limit_per_split >= 0, "load_cifar10: limit must be >= 0 (0 keeps everything), got ", limit_per_split);
  std::error_code ec;
  TL_CHECK(fs::is_directory(dir, ec), "load_cifar10: ", dir, fs::exists(dir, ec) ? " is not a folder" : " does not exist");
  fs::path base(dir);
  auto has_batches = [&](const fs::path& p) {
    return fs::exists(p / "data_batch_1.bin", ec) || fs::exists(p / "test_batch.bin", ec);
  };
  if (!has_batches(base) && has_batches(base / "cifar-10-batches-bin")) base /= "cifar-10-batches-bin";

  DatasetSplits out;
  out.classes = fs::exists(base / "batches.meta.txt", ec) ? read_class_names(base / "batches.meta.txt")
                                                          : cifar10_names();
  out.train.classes = out.val.classes = out.test.classes = out.classes;
  bool any = false;
  for (int b = 1; b <= 5; ++b) {
    fs::path file = base / ("data_batch_" + std::to_string(b) + ".bin");
    if (!fs::exists(file, ec)) continue;
    any = true;
    read_batch(file, limit_per_split, out.train);
  }
  if (fs::exists(base / "test_batch.bin", ec)) {
    any = true;
    read_batch(base / "test_batch.bin", limit_per_split, out.test);
  }
  TL_CHECK(any, "load_cifar10: ", dir, " holds no CIFAR-10 binary batch (data_batch_1.bin .. data_batch_5.bin, ",
           "test_batch.bin; the cifar-10-binary.tar.gz download)");
  return out;
}

}  // namespace tl
