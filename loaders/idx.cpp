#include "loaders/idx.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

#include "engine/error.h"

#ifdef TL_HAVE_ZLIB
#include <zlib.h>
#endif

namespace tl {

namespace {

// No real IDX file comes near this; a header claiming more is corrupt or hostile.
constexpr uint64_t kMaxDataBytes = uint64_t{1} << 40;
// Deflate cannot expand its input by more than 1032:1 (zlib's documented limit), so a header's
// claim can be capped by what the compressed bytes could possibly hold before memory is reserved.
constexpr uint64_t kMaxDeflateRatio = 1032;

std::string hex(uint64_t value, int digits) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%0*llX", digits, static_cast<unsigned long long>(value));
  return buf;
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(dims[i]);
  }
  s += ']';
  return s;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

// A stream of the file's (decompressed) bytes.
class ByteSource {
 public:
  explicit ByteSource(std::string path) : path_(std::move(path)) {}
  virtual ~ByteSource() = default;
  // Reads up to n bytes; returns fewer only at the end of the data.
  virtual size_t read(uint8_t* dst, size_t n) = 0;
  // An upper bound on the bytes still to come: caps the memory reserved on a header's word.
  virtual uint64_t remaining_bound() const = 0;

 protected:
  [[noreturn]] void fail(const std::string& what) const { throw Error(str("read_idx ", path_, ": ", what)); }
  size_t read_file(std::FILE* f, uint8_t* dst, size_t n) const {
    size_t got = std::fread(dst, 1, n, f);
    if (got < n && std::ferror(f)) fail(str("read error (", std::strerror(errno), ")"));
    return got;
  }
  std::string path_;
};

class RawSource : public ByteSource {
 public:
  RawSource(std::string path, File file, uint64_t file_size)
      : ByteSource(std::move(path)), file_(std::move(file)), remaining_(file_size) {}
  size_t read(uint8_t* dst, size_t n) override {
    size_t got = read_file(file_.get(), dst, n);
    remaining_ -= std::min<uint64_t>(remaining_, got);
    return got;
  }
  uint64_t remaining_bound() const override { return remaining_; }

 private:
  File file_;
  uint64_t remaining_;
};

#ifdef TL_HAVE_ZLIB
// Inflates gzip members one after another (as gzip -d does); anything after the last member must be
// another gzip member, so trailing garbage is reported as corruption.
class GzipSource : public ByteSource {
 public:
  GzipSource(std::string path, File file, uint64_t file_size)
      : ByteSource(std::move(path)), file_(std::move(file)), unread_(file_size), in_(kChunk) {
    int ret = inflateInit2(&z_, 15 + 16);  // 15-bit window, gzip wrapper only
    if (ret != Z_OK) fail(str("cannot start zlib (", zError(ret), ")"));
  }
  ~GzipSource() override { inflateEnd(&z_); }

  size_t read(uint8_t* dst, size_t n) override {
    n = std::min<size_t>(n, size_t{1} << 30);  // avail_out is a 32-bit count
    z_.next_out = dst;
    z_.avail_out = static_cast<uInt>(n);
    while (z_.avail_out > 0 && !finished_) {
      if (z_.avail_in == 0 && !refill()) {
        if (at_member_end_) {
          finished_ = true;
          break;
        }
        fail("corrupt gzip: compressed stream ends early (truncated .gz file)");
      }
      at_member_end_ = false;
      int ret = inflate(&z_, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        inflateReset(&z_);  // more input, if any, must be the next member
        at_member_end_ = true;
      } else if (ret == Z_BUF_ERROR && z_.avail_in == 0) {
        continue;  // needs more input: refill above
      } else if (ret != Z_OK) {
        fail(str("corrupt gzip: ", z_.msg ? z_.msg : zError(ret)));
      }
    }
    return n - z_.avail_out;
  }

  uint64_t remaining_bound() const override {
    uint64_t compressed = unread_ + z_.avail_in;
    // Plus what inflate may hold back in its window between calls.
    uint64_t slack = uint64_t{1} << 16;
    if (compressed > (std::numeric_limits<uint64_t>::max() - slack) / kMaxDeflateRatio)
      return std::numeric_limits<uint64_t>::max();
    return compressed * kMaxDeflateRatio + slack;
  }

 private:
  static constexpr size_t kChunk = size_t{1} << 16;
  bool refill() {
    size_t got = read_file(file_.get(), in_.data(), in_.size());
    unread_ -= std::min<uint64_t>(unread_, got);
    z_.next_in = in_.data();
    z_.avail_in = static_cast<uInt>(got);
    return got > 0;
  }
  File file_;
  uint64_t unread_;
  std::vector<uint8_t> in_;
  z_stream z_{};
  bool at_member_end_ = false;
  bool finished_ = false;
};
#endif

std::unique_ptr<ByteSource> open_source(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw Error(str("read_idx ", path, ": is a directory"));
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) throw Error(str("read_idx ", path, ": cannot open (", std::strerror(errno), ")"));
  uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(str("read_idx ", path, ": cannot stat (", ec.message(), ")"));
  uint8_t magic[2] = {0, 0};
  size_t got = std::fread(magic, 1, 2, file.get());
  std::rewind(file.get());
  bool gzipped = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (!gzipped) return std::make_unique<RawSource>(path, std::move(file), size);
#ifdef TL_HAVE_ZLIB
  return std::make_unique<GzipSource>(path, std::move(file), size);
#else
  throw Error(str("read_idx ", path, ": file is gzip-compressed but tl was built without zlib "
                                     "(decompress it with gunzip, or rebuild with zlib)"));
#endif
}

const char* type_name(uint8_t code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  std::unique_ptr<ByteSource> source = open_source(path);
  auto fail = [&](const std::string& what) { throw Error(str("read_idx ", path, ": ", what)); };

  uint8_t magic[4];
  size_t got = source->read(magic, 4);
  if (got < 4) fail(str("truncated header: needs 4 bytes of magic, file has ", got));
  uint32_t magic_value = (uint32_t{magic[0]} << 24) | (uint32_t{magic[1]} << 16) | (uint32_t{magic[2]} << 8) | magic[3];
  if (magic[0] != 0 || magic[1] != 0)
    fail(str("wrong magic ", hex(magic_value, 8), " (an IDX file starts with 00 00 <type> <ndims>, e.g. 0x00000803)"));
  const char* type = type_name(magic[2]);
  if (!type) fail(str("wrong magic ", hex(magic_value, 8), ": unknown type code ", hex(magic[2], 2)));
  if (magic[2] != 0x08)
    fail(str("unsupported type code ", hex(magic[2], 2), " (", type, "); only 0x08 (unsigned byte) is supported"));
  const int ndims = magic[3];
  if (ndims == 0) fail(str("wrong magic ", hex(magic_value, 8), ": zero dimensions"));

  std::vector<uint8_t> size_bytes(4 * static_cast<size_t>(ndims));
  got = source->read(size_bytes.data(), size_bytes.size());
  if (got < size_bytes.size())
    fail(str("truncated header: ", ndims, " dimension sizes need ", size_bytes.size(), " bytes, file has ", got));
  IdxArray array;
  uint64_t total = 1;
  bool absurd = false;
  for (int d = 0; d < ndims; ++d) {
    const uint8_t* b = &size_bytes[4 * static_cast<size_t>(d)];
    uint64_t dim = (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) | (uint64_t{b[2]} << 8) | b[3];
    array.dims.push_back(static_cast<int64_t>(dim));
    // Checked before multiplying, so the product can never overflow.
    if (dim != 0 && total > kMaxDataBytes / dim) absurd = true;
    else total *= dim;
  }
  if (absurd) fail(str("absurd size: dims ", dims_str(array.dims), " hold more than 2^40 bytes"));

  // Reserve no more than the file can actually deliver, then read what is really there.
  array.data.reserve(static_cast<size_t>(std::min(total, source->remaining_bound())));
  constexpr size_t kChunk = size_t{1} << 20;
  while (array.data.size() < total) {
    size_t old = array.data.size();
    size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, total - old));
    array.data.resize(old + want);
    size_t n = source->read(array.data.data() + old, want);
    array.data.resize(old + n);
    if (n < want) break;
  }
  if (array.data.size() < total)
    fail(str("truncated: header says ", total, " bytes of data, file has ", array.data.size()));
  // Count (without keeping) anything beyond the data so the message can say how much there is.
  uint64_t extra = 0;
  std::vector<uint8_t> scratch(1 << 16);
  for (size_t n; (n = source->read(scratch.data(), scratch.size())) > 0;) extra += n;
  if (extra > 0) fail(str("trailing bytes: header says ", total, " bytes of data, file has ", total + extra));
  return array;
}

namespace {

std::string find_idx_file(const std::string& dir, const std::string& name) {
  std::filesystem::path raw = std::filesystem::path(dir) / name;
  std::filesystem::path gz = std::filesystem::path(dir) / (name + ".gz");
  std::error_code ec;
  if (std::filesystem::exists(raw, ec)) return raw.string();
  if (std::filesystem::exists(gz, ec)) return gz.string();
  throw Error(str("load_idx_dataset: found neither ", raw.string(), " nor ", gz.string()));
}

}  // namespace

IdxDataset load_idx_dataset(const std::string& dir, const std::string& split, int64_t limit, double mean,
                            double std) {
  TL_CHECK(split == "train" || split == "t10k", "load_idx_dataset: split must be \"train\" or \"t10k\", got \"",
           split, "\"");
  TL_CHECK(limit >= 0, "load_idx_dataset: limit must be >= 0 (0 keeps everything), got ", limit);
  TL_CHECK(std::isfinite(mean) && std::isfinite(std) && std > 0,
           "load_idx_dataset: need a finite mean and a positive std, got mean ", mean, " std ", std);
  const std::string image_path = find_idx_file(dir, split + "-images-idx3-ubyte");
  const std::string label_path = find_idx_file(dir, split + "-labels-idx1-ubyte");
  IdxArray images = read_idx(image_path);
  IdxArray labels = read_idx(label_path);
  TL_CHECK(images.dims.size() == 3, "load_idx_dataset: ", image_path, ": expected images [N,H,W], got dims ",
           dims_str(images.dims));
  TL_CHECK(labels.dims.size() == 1, "load_idx_dataset: ", label_path, ": expected labels [N], got dims ",
           dims_str(labels.dims));
  const int64_t count = images.dims[0], height = images.dims[1], width = images.dims[2];
  TL_CHECK(labels.dims[0] == count, "load_idx_dataset: count mismatch: ", image_path, " has ", count,
           " images but ", label_path, " has ", labels.dims[0], " labels");
  for (int64_t i = 0; i < count; ++i) {
    int label = labels.data[static_cast<size_t>(i)];
    TL_CHECK(label < 10, "load_idx_dataset: ", label_path, ": label ", label, " at index ", i,
             " is out of range 0..9");
  }

  const int64_t n = limit > 0 ? std::min(limit, count) : count;
  IdxDataset out;
  out.images = Tensor::empty({n, 1, height, width}, DType::F32);
  out.labels = Tensor::empty({n}, DType::I64);
  // Computed in float, as x.float() / 255 then (x - mean) / std would be in PyTorch.
  float table[256];
  for (int b = 0; b < 256; ++b)
    table[b] = (static_cast<float>(b) / 255.0f - static_cast<float>(mean)) / static_cast<float>(std);
  float* dst = out.images.data<float>();
  const int64_t pixels = n * height * width;
  for (int64_t i = 0; i < pixels; ++i) dst[i] = table[images.data[static_cast<size_t>(i)]];
  int64_t* label_dst = out.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) label_dst[i] = labels.data[static_cast<size_t>(i)];
  return out;
}

}  // namespace tl
