#include "loaders/feature_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <utility>

#include "engine/error.h"
#include "loaders/npy.h"
#include "weights/json.h"
#include "weights/safetensors.h"
#include "weights/sha256.h"

namespace tl {

namespace fs = std::filesystem;

namespace {

// Written into every cache file; a file without it (or with another version) is not ours to reuse.
constexpr const char* kFormat = "tl feature cache 1";

std::string to_hex(const void* data, size_t size) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * size);
  for (size_t i = 0; i < size; ++i) {
    uint8_t b = static_cast<const uint8_t*>(data)[i];
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

// What makes a cached row reusable for an example.
struct RowIdentity {
  std::string path;          // absolute, normalised; hex-encoded when it is not UTF-8 (JSON holds only UTF-8)
  bool in_memory = false;
  bool known = true;         // false when the file could not be stat'ed: such a row never matches
  int64_t size = -1, mtime_ns = -1;  // files
  std::string content_hash;          // in-memory examples: "sha256:<hex>"

  bool matches(const RowIdentity& o) const {
    if (!known || !o.known || path != o.path || in_memory != o.in_memory) return false;
    return in_memory ? content_hash == o.content_hash : size == o.size && mtime_ns == o.mtime_ns;
  }
  std::string json() const {
    std::string p = json::escape_string(path);
    return in_memory ? str("[", p, ",", json::escape_string(content_hash), "]")
                     : str("[", p, ",", size, ",", mtime_ns, "]");
  }
};

std::string path_key(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  std::string s = ec ? path : abs.lexically_normal().string();
  // Absolute paths start with '/', so the prefix cannot collide with a real path.
  return json::is_valid_utf8(s) ? s : "non-utf8:" + to_hex(s.data(), s.size());
}

RowIdentity identity_of(const Example& e) {
  RowIdentity id;
  id.path = path_key(e.path);
  if (e.image) {
    id.in_memory = true;
    Sha256 h;
    uint32_t dims[2] = {static_cast<uint32_t>(e.image->width), static_cast<uint32_t>(e.image->height)};
    h.update(dims, sizeof dims);
    h.update(e.image->rgb.data(), e.image->rgb.size());
    id.content_hash = "sha256:" + h.finish_hex();
    return id;
  }
  struct stat st;
  if (::stat(e.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    id.known = false;
    return id;
  }
  id.size = static_cast<int64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return id;
}

RowIdentity parse_row(const json::Value& v) {
  TL_CHECK(v.is_array(), "a row is not an array");
  const json::Array& a = v.as_array();
  TL_CHECK((a.size() == 2 || a.size() == 3) && a[0].is_string(), "a row is not [path, ...]");
  RowIdentity id;
  id.path = a[0].as_string();
  if (a.size() == 2) {
    id.in_memory = true;
    id.content_hash = a[1].as_string();
  } else {
    id.size = a[1].as_int();
    id.mtime_ns = a[2].as_int();
    id.known = id.size >= 0;
  }
  return id;
}

struct CachedFeatures {
  Tensor features;  // F32 [M,D]
  std::vector<RowIdentity> rows;
};

// The cache file's contents, or nothing when it is absent; a file that is present but unusable is
// reported and treated as absent.
std::optional<CachedFeatures> load_cache(const std::string& file, const std::map<std::string, std::string>& key) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  try {
    SafetensorsFile f = SafetensorsFile::open(file);
    const auto& meta = f.metadata();
    auto field = [&](const std::string& name) -> const std::string& {
      auto it = meta.find(name);
      TL_CHECK(it != meta.end(), "metadata \"", name, "\" is missing");
      return it->second;
    };
    TL_CHECK(field("format") == kFormat, "format is \"", field("format"), "\", not \"", kFormat, "\"");
    for (const auto& [name, value] : key)
      TL_CHECK(field(name) == value, "it was written for ", name, " \"", field(name), "\", not \"", value, "\"");
    const SafetensorsEntry* e = f.find("features");
    TL_CHECK(e != nullptr, "no tensor \"features\"");
    TL_CHECK(e->dtype == DType::F32 && e->shape.size() == 2, "\"features\" is ", dtype_name(e->dtype),
             shape_str(e->shape), ", not F32 [N,D]");
    json::Value rows = json::parse(field("rows"));
    TL_CHECK(rows.is_array(), "metadata \"rows\" is not an array");
    TL_CHECK(static_cast<int64_t>(rows.as_array().size()) == e->shape[0], "metadata \"rows\" has ",
             rows.as_array().size(), " entries for ", e->shape[0], " feature rows");
    CachedFeatures c;
    for (const json::Value& r : rows.as_array()) c.rows.push_back(parse_row(r));
    c.features = f.read("features");
    return c;
  } catch (const std::exception& err) {
    std::cerr << "feature cache " << file << ": ignored (" << err.what() << "); its features are recomputed\n";
    return std::nullopt;
  }
}

// compute()'s answer for `k` rows, checked and brought to F32.
Tensor checked_features(const Tensor& t, size_t k) {
  TL_CHECK(t.defined(), "feature cache: compute() returned an undefined tensor for ", k, " examples");
  TL_CHECK(t.device() == Device::CPU && (t.dtype() == DType::F32 || t.dtype() == DType::F64) && t.dim() == 2 &&
               t.size(0) == static_cast<int64_t>(k),
           "feature cache: compute() returned ", t.describe(), " for ", k, " examples; expected CPU F32 [", k, ",D]");
  return t.dtype() == DType::F32 ? t : t.to_dtype(DType::F32);
}

}  // namespace

FeatureCache::FeatureCache(std::string dir, std::string weights_hash, std::string transform_description)
    : dir_(std::move(dir)), weights_hash_(std::move(weights_hash)), transform_(std::move(transform_description)) {}

std::string FeatureCache::file_for(const std::string& split) const {
  // Length-prefixed fields: no two different keys can concatenate to the same text.
  std::string key = str(kFormat, "\n", split.size(), ":", split, "\n", weights_hash_.size(), ":", weights_hash_, "\n",
                        transform_.size(), ":", transform_);
  return (fs::path(dir_) / ("features-" + sha256_hex(key) + ".safetensors")).string();
}

Tensor FeatureCache::get(const Dataset& data, const std::string& split,
                         const std::function<Tensor(const std::vector<int64_t>&)>& compute, int64_t* recomputed) {
  const std::string file = file_for(split);
  const std::map<std::string, std::string> key = {
      {"split", split}, {"weights_hash", weights_hash_}, {"transform", transform_}};
  const int64_t n = static_cast<int64_t>(data.examples.size());

  // Identities are taken before compute() runs: a file changed meanwhile is recomputed next time, never
  // wrongly reused.
  std::vector<RowIdentity> ids;
  ids.reserve(n);
  for (const Example& e : data.examples) ids.push_back(identity_of(e));

  // source[i]: the cached row reused for example i, or -1 when it must be computed.
  std::vector<int64_t> source(n, -1);
  std::optional<CachedFeatures> cached = load_cache(file, key);
  int64_t width = -1;
  if (cached) {
    width = cached->features.size(1);
    std::map<std::string, int64_t> row_of;
    for (size_t r = 0; r < cached->rows.size(); ++r) row_of.emplace(cached->rows[r].path, static_cast<int64_t>(r));
    for (int64_t i = 0; i < n; ++i) {
      auto it = row_of.find(ids[i].path);
      if (it != row_of.end() && ids[i].matches(cached->rows[it->second])) source[i] = it->second;
    }
  }
  std::vector<int64_t> missing;
  for (int64_t i = 0; i < n; ++i)
    if (source[i] < 0) missing.push_back(i);

  Tensor out;
  if (missing.empty()) out = Tensor::empty({n, width < 0 ? 0 : width}, DType::F32);
  // missing may grow inside the loop: a feature width that differs from the cache's invalidates every row.
  for (size_t begin = 0, end = 0; begin < missing.size(); begin = end) {
    end = std::min(missing.size(), begin + static_cast<size_t>(kFeatureCacheChunk));
    std::vector<int64_t> chunk(missing.begin() + static_cast<std::ptrdiff_t>(begin),
                               missing.begin() + static_cast<std::ptrdiff_t>(end));
    Tensor f = checked_features(compute(chunk), chunk.size());
    if (!out.defined()) {
      if (width >= 0 && f.size(1) != width) {
        std::cerr << "feature cache " << file << ": cached features are " << width << " wide but compute() returns "
                  << f.size(1) << "; every row is recomputed\n";
        for (int64_t i = 0; i < n; ++i)
          if (source[i] >= 0) missing.push_back(i), source[i] = -1;
      }
      width = f.size(1);
      out = Tensor::empty({n, width}, DType::F32);
    }
    TL_CHECK(f.size(1) == width, "feature cache: compute() returned ", f.describe(), " after features ", width,
             " wide; the width must not change");
    const float* src = f.data<float>();
    float* dst = out.data<float>();
    for (size_t k = 0; k < chunk.size(); ++k)
      std::memcpy(dst + chunk[k] * width, src + static_cast<int64_t>(k) * width, sizeof(float) * width);
  }
  if (cached) {
    const float* src = cached->features.data<float>();
    float* dst = out.data<float>();
    for (int64_t i = 0; i < n; ++i)
      if (source[i] >= 0) std::memcpy(dst + i * width, src + source[i] * width, sizeof(float) * width);
  }
  if (recomputed) *recomputed = static_cast<int64_t>(missing.size());

  if (!missing.empty()) {
    try {
      std::string rows = "[";
      for (int64_t i = 0; i < n; ++i) rows += (i ? "," : "") + ids[i].json();
      rows += "]";
      std::map<std::string, std::string> meta = key;
      meta["format"] = kFormat;
      meta["rows"] = std::move(rows);
      fs::create_directories(dir_);
      write_safetensors(file, {{"features", out}}, meta);
    } catch (const std::exception& err) {
      std::cerr << "feature cache " << file << ": not written (" << err.what() << "); the next run recomputes\n";
    }
  }
  return out;
}

void export_features_npy(const std::string& path, const Tensor& features) { write_npy(path, features); }

void export_features_csv(const std::string& path, const Tensor& features, const Dataset& data) {
  TL_CHECK(features.defined() && features.device() == Device::CPU && features.dim() == 2 &&
               (features.dtype() == DType::F32 || features.dtype() == DType::F64),
           path, ": features must be a CPU F32 [N,D] tensor, not ",
           features.defined() ? features.describe() : std::string("undefined"));
  const int64_t n = features.size(0), d = features.size(1);
  TL_CHECK(n == static_cast<int64_t>(data.examples.size()), path, ": features ", features.describe(), " have ", n,
           " rows for ", data.examples.size(), " examples");
  Tensor f = features.dtype() == DType::F32 ? features : features.to_dtype(DType::F32);
  const float* v = f.data<float>();

  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TL_CHECK(out.good(), path, ": cannot create ", tmp, ": ", std::strerror(errno));
    std::string line = "path,label";
    for (int64_t j = 0; j < d; ++j) line += str(",f", j);
    out << line << '\n';
    char num[32];
    for (int64_t i = 0; i < n; ++i) {
      const Example& e = data.examples[i];
      if (e.path.find_first_of(",\"\r\n") == std::string::npos) {
        line = e.path;
      } else {  // RFC 4180: enclose in quotes, double the quotes inside
        line = "\"";
        for (char c : e.path) line += c == '"' ? std::string("\"\"") : std::string(1, c);
        line += "\"";
      }
      line += str(",", e.label);
      for (int64_t j = 0; j < d; ++j) {
        std::snprintf(num, sizeof num, ",%.9g", static_cast<double>(v[i * d + j]));
        line += num;
      }
      out << line << '\n';
    }
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(str(path, ": cannot write ", tmp, " (disk full?)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    throw Error(str(path, ": cannot rename ", tmp, " over it: ", std::strerror(err)));
  }
}

}  // namespace tl
