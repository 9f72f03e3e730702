#include "weights/pth.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#include "weights/pth_detail.h"
#include "weights/tar_reader.h"
#include "weights/zip_reader.h"

namespace tl {

// Storage bytes are little-endian on disk and copied as memory.
static_assert(std::endian::native == std::endian::little, ".pth reading assumes a little-endian host");

using pth_detail::fail;

namespace {

// A view may repeat elements (stride 0, as expand() makes), so a tensor can have more elements than the storage
// range it spans; beyond this factor (and 16M elements) a tiny file could make read() allocate without bound.
constexpr uint64_t kMaxExpansion = 16, kExpansionSlack = 1 << 24;

float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf, NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    uint32_t shift = 0;
    while (!(mant & 0x400)) {
      mant <<= 1;
      ++shift;
    }
    bits = sign | ((113 - shift) << 23) | ((mant & 0x3FF) << 13);
  }
  return std::bit_cast<float>(bits);
}

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// out[i] = convert(element at the i-th position of the view), in row-major order of the view.
template <class Src, class Dst, class Convert>
void gather(const unsigned char* storage, const PthEntry& e, Dst* out, Convert convert) {
  const size_t rank = e.shape.size();
  if (rank == 0) {
    out[0] = convert(load<Src>(storage + static_cast<size_t>(e.storage_offset) * sizeof(Src)));
    return;
  }
  const int64_t inner = e.shape[rank - 1], inner_stride = e.stride[rank - 1];
  std::vector<int64_t> index(rank - 1, 0);
  int64_t outer = shape_numel(e.shape) / inner;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t src = e.storage_offset;
    for (size_t d = 0; d + 1 < rank; ++d) src += index[d] * e.stride[d];
    for (int64_t j = 0; j < inner; ++j)
      out[o * inner + j] = convert(load<Src>(storage + static_cast<size_t>(src + j * inner_stride) * sizeof(Src)));
    for (size_t d = rank - 1; d-- > 0;) {  // odometer over the outer dimensions
      if (++index[d] < e.shape[d]) break;
      index[d] = 0;
    }
  }
}

void gather_any(const unsigned char* storage, const PthEntry& e, Tensor& out) {
  const std::string& t = e.storage_type;
  auto same = [](auto v) { return v; };
  auto widen = [](auto v) { return static_cast<int64_t>(v); };
  if (t == "FloatStorage") gather<float>(storage, e, out.data<float>(), same);
  else if (t == "DoubleStorage") gather<double>(storage, e, out.data<double>(), same);
  else if (t == "LongStorage") gather<int64_t>(storage, e, out.data<int64_t>(), same);
  else if (t == "HalfStorage") gather<uint16_t>(storage, e, out.data<float>(), half_to_float);
  else if (t == "BFloat16Storage")
    gather<uint16_t>(storage, e, out.data<float>(), [](uint16_t b) { return std::bit_cast<float>(uint32_t{b} << 16); });
  else if (t == "IntStorage") gather<int32_t>(storage, e, out.data<int64_t>(), widen);
  else if (t == "ShortStorage") gather<int16_t>(storage, e, out.data<int64_t>(), widen);
  else if (t == "CharStorage") gather<int8_t>(storage, e, out.data<int64_t>(), widen);
  else if (t == "ByteStorage") gather<uint8_t>(storage, e, out.data<int64_t>(), widen);
  else if (t == "BoolStorage") gather<uint8_t>(storage, e, out.data<int64_t>(), [](uint8_t b) { return int64_t{b != 0}; });
  else throw Error(str("pth: no conversion for ", t));  // open() admits only the types above
}

bool is_contiguous(const PthEntry& e) {
  int64_t expected = 1;
  for (size_t d = e.shape.size(); d-- > 0;) {
    if (e.shape[d] != 1 && e.stride[d] != expected) return false;
    expected *= e.shape[d];
  }
  return true;
}

// Float, Double and Long storages hold what read() returns; the others are converted.
bool is_native(const PthEntry& e) {
  return e.storage_type == "FloatStorage" || e.storage_type == "DoubleStorage" || e.storage_type == "LongStorage";
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

PthFile PthFile::open(const std::string& path) {
  std::shared_ptr<const BinaryFile> file = BinaryFile::open(path);
  unsigned char head[kTarBlock] = {};
  const uint64_t n = std::min<uint64_t>(file->size(), kTarBlock);
  file->read(0, head, n, "the file header");
  Contents c;
  // A pickle starts with PROTO (0x80); a tar with a member name, which is never that byte.
  if (n >= 4 && head[0] == 'P' && head[1] == 'K' && ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6)))
    c = pth_detail::open_zip(file);
  else if (n >= 1 && head[0] == 0x80)
    c = pth_detail::open_legacy(file);
  else if (n == kTarBlock && is_tar_header(head))
    c = pth_detail::open_tar(file);
  else
    fail(path, "not a PyTorch checkpoint: no zip, tar or pickle signature at the start of the file (", file->size(),
         " bytes)");

  PthFile f;
  f.path_ = path;
  f.format_ = c.format;
  f.file_ = file;
  f.entries_ = std::move(c.entries);
  f.storages_ = std::move(c.storages);
  for (size_t i = 0; i < f.entries_.size(); ++i) {
    const PthEntry& e = f.entries_[i];
    if (!f.index_.emplace(e.name, i).second) fail(path, "tensor '", e.name, "' appears twice");
    auto it = f.storages_.find(e.storage_key);
    if (it == f.storages_.end()) fail(path, "tensor '", e.name, "': storage '", e.storage_key, "' is unknown");
    const PthStorage& s = it->second;
    if (s.type != e.storage_type)
      fail(path, "tensor '", e.name, "' is a ", e.storage_type, " view of storage '", e.storage_key, "', a ", s.type);
    uint64_t need = pth_detail::needed_bytes(path, e, s.element_size);
    if (s.size_known && need > s.bytes)
      fail(path, "tensor '", e.name, "' (size ", shape_str(e.shape), ", stride ", shape_str(e.stride), ", offset ",
           e.storage_offset, ") needs ", need, " bytes of storage '", e.storage_key, "', which has ", s.bytes);
    uint64_t numel = static_cast<uint64_t>(shape_numel(e.shape)), spanned = need / s.element_size;
    if (numel > kMaxExpansion * spanned + kExpansionSlack)
      fail(path, "tensor '", e.name, "' (size ", shape_str(e.shape), ", stride ", shape_str(e.stride), ") repeats ",
           spanned, " stored elements as ", numel, "; refusing to expand it (at most ", kMaxExpansion, "x)");
  }
  return f;
}

const PthEntry* PthFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::vector<unsigned char> PthFile::read_storage(const PthEntry& e, uint64_t bytes) const {
  const PthStorage& s = storages_.at(e.storage_key);
  // A zip entry's CRC covers all of it: read it whole to check it.
  if (s.has_crc) bytes = s.bytes;
  std::vector<unsigned char> buf(static_cast<size_t>(bytes));
  file_->read(s.file_offset, buf.data(), bytes, s.where);
  if (s.has_crc) {
    uint32_t crc = crc32(buf.data(), buf.size());
    if (crc != s.crc32)
      fail(path_, s.where, ": CRC-32 mismatch (stored ", hex32(s.crc32), ", computed ", hex32(crc), "): the file is corrupt");
  }
  return buf;
}

Tensor PthFile::read_entry(const PthEntry& e, const std::vector<unsigned char>* storage_bytes) const {
  const PthStorage& s = storages_.at(e.storage_key);
  uint64_t need = pth_detail::needed_bytes(path_, e, s.element_size);
  if (need > s.present)
    fail(path_, "tensor '", e.name, "' (storage '", e.storage_key, "') is truncated: needs ", need,
         " bytes, the file holds ", s.present);
  Tensor out = Tensor::empty(e.shape, e.dtype);
  if (out.numel() == 0) return out;
  if (storage_bytes) {
    gather_any(storage_bytes->data(), e, out);
    return out;
  }
  file_->check_unchanged();
  // The common case -- a whole Float/Double/Long storage -- goes straight from the file into the tensor.
  const uint64_t begin = static_cast<uint64_t>(e.storage_offset) * s.element_size;
  if (is_native(e) && is_contiguous(e) && (!s.has_crc || (begin == 0 && out.nbytes() == s.bytes))) {
    file_->read(s.file_offset + begin, out.raw(), out.nbytes(), str(s.where, " (tensor '", e.name, "')"));
    if (s.has_crc) {
      uint32_t crc = crc32(out.raw(), out.nbytes());
      if (crc != s.crc32)
        fail(path_, s.where, ": CRC-32 mismatch (stored ", hex32(s.crc32), ", computed ", hex32(crc),
             "): the file is corrupt");
    }
    return out;
  }
  std::vector<unsigned char> buf = read_storage(e, need);
  gather_any(buf.data(), e, out);
  return out;
}

Tensor PthFile::read(const std::string& name) const {
  const PthEntry* e = find(name);
  if (!e) fail(path_, "no tensor named '", name, "'");
  return read_entry(*e, nullptr);
}

ImportedCheckpoint PthFile::read_all() const {
  // A storage shared by several tensors (views, tied weights) is read once and kept until its last user.
  std::map<std::string, size_t> users;
  std::map<std::string, uint64_t> reach;
  for (const PthEntry& e : entries_) {
    ++users[e.storage_key];
    uint64_t need = pth_detail::needed_bytes(path_, e, storages_.at(e.storage_key).element_size);
    reach[e.storage_key] = std::max(reach[e.storage_key], need);
  }
  std::map<std::string, std::vector<unsigned char>> cache;
  ImportedCheckpoint ck;
  ck.format = format_;
  for (const PthEntry& e : entries_) {
    const std::vector<unsigned char>* shared = nullptr;
    const PthStorage& s = storages_.at(e.storage_key);
    if (users.at(e.storage_key) > 1 && pth_detail::needed_bytes(path_, e, s.element_size) <= s.present) {
      auto it = cache.find(e.storage_key);
      if (it == cache.end()) {
        file_->check_unchanged();
        it = cache.emplace(e.storage_key, read_storage(e, std::min(reach.at(e.storage_key), s.present))).first;
      }
      shared = &it->second;
    }
    ck.tensors.push_back({e.name, read_entry(e, shared)});
    if (--users.at(e.storage_key) == 0) cache.erase(e.storage_key);
  }
  return ck;
}

}  // namespace tl
