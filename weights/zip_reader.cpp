#include "weights/zip_reader.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <optional>

#include "engine/error.h"

namespace tl {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;       // "PK\3\4"
constexpr uint32_t kCentralSig = 0x02014b50;     // "PK\1\2"
constexpr uint32_t kEndSig = 0x06054b50;         // "PK\5\6"
constexpr uint32_t kEnd64Sig = 0x06064b50;       // "PK\6\6"
constexpr uint32_t kLocator64Sig = 0x07064b50;   // "PK\6\7"
constexpr uint32_t kDescriptorSig = 0x08074b50;  // "PK\7\8"
constexpr size_t kLocalHeaderBytes = 30, kCentralHeaderBytes = 46, kEndBytes = 22, kEnd64Bytes = 56,
                 kLocator64Bytes = 20;
constexpr uint32_t kMax32 = 0xFFFFFFFFu;
constexpr uint16_t kFlagEncrypted = 1, kFlagDescriptor = 8;

template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(str(path, ": ", args...));
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Slicing-by-8 tables for the reflected polynomial 0xEDB88320.
struct CrcTables {
  std::array<std::array<uint32_t, 256>, 8> t;
  CrcTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};

// Fills the ZIP64 extended-information field (id 0x0001) values of the header fields that held 0xFFFFFFFF,
// in APPNOTE's order: uncompressed size, compressed size, local header offset.
void read_zip64_extra(const std::string& path, const std::string& name, const unsigned char* extra, size_t bytes,
                      uint64_t* usize, uint64_t* csize, uint64_t* offset) {
  size_t pos = 0;
  while (pos + 4 <= bytes) {
    uint16_t id = le16(extra + pos), len = le16(extra + pos + 2);
    if (len > bytes - pos - 4) fail(path, "zip entry '", name, "': extra field ", id, " runs past its header");
    if (id == 0x0001) {
      const unsigned char* p = extra + pos + 4;
      size_t left = len;
      for (uint64_t* field : {usize, csize, offset}) {
        if (!field) continue;
        if (left < 8) fail(path, "zip entry '", name, "': ZIP64 extra field is too short for the sizes it must hold");
        *field = le64(p);
        p += 8;
        left -= 8;
      }
      return;
    }
    pos += 4 + static_cast<size_t>(len);
  }
  fail(path, "zip entry '", name, "': a size or offset is 0xFFFFFFFF but there is no ZIP64 extra field");
}

struct Descriptor {
  uint64_t size;  // payload bytes
  uint32_t crc;
  uint64_t end;  // first byte after the descriptor
};

// What follows a real data descriptor: the next local header, the central directory, or the end of the file (or
// too few bytes to tell, in a file cut there). `in_buf` bytes of it are at p, `in_file` remain in the file.
bool followed_by_record(const unsigned char* p, uint64_t in_buf, uint64_t in_file) {
  if (in_file < 4) return true;
  if (in_buf < 4) return false;
  uint32_t sig = le32(p);
  return sig == kLocalSig || sig == kCentralSig || sig == kEndSig || sig == kEnd64Sig;
}

// The data descriptor ending a stored payload that starts at `start` (see zip_reader.h for the method), or
// nothing when the file ends first.
std::optional<Descriptor> find_descriptor(const BinaryFile& file, uint64_t start) {
  constexpr uint64_t kChunk = 1 << 20, kLookahead = 28;  // a ZIP64 descriptor (24 bytes) and the next signature
  const uint64_t file_size = file.size();
  std::vector<unsigned char> buf;
  uint32_t crc = 0;  // of bytes [start, crc_end)
  uint64_t crc_end = start;
  for (uint64_t pos = start; pos < file_size; pos += kChunk) {
    uint64_t scan_end = std::min(file_size, pos + kChunk);
    uint64_t buf_end = std::min(file_size, scan_end + kLookahead);
    buf.resize(static_cast<size_t>(buf_end - pos));
    file.read(pos, buf.data(), buf.size(), "zip payload");
    for (uint64_t p = pos; p + 4 <= buf_end && p < scan_end; ++p) {
      const unsigned char* b = buf.data() + (p - pos);
      if (b[0] != 'P' || le32(b) != kDescriptorSig) continue;
      crc = crc32(buf.data() + (crc_end - pos), static_cast<size_t>(p - crc_end), crc);
      crc_end = p;
      uint64_t size = p - start;
      if (buf_end - p >= 16 && le32(b + 4) == crc && le32(b + 8) == size && le32(b + 12) == size &&
          size < kMax32 && followed_by_record(b + 16, buf_end - p - 16, file_size - p - 16))
        return Descriptor{size, crc, p + 16};
      if (buf_end - p >= 24 && le32(b + 4) == crc && le64(b + 8) == size && le64(b + 16) == size &&
          followed_by_record(b + 24, buf_end - p - 24, file_size - p - 24))
        return Descriptor{size, crc, p + 24};
    }
    crc = crc32(buf.data() + (crc_end - pos), static_cast<size_t>(scan_end - crc_end), crc);
    crc_end = scan_end;
  }
  return std::nullopt;
}

struct LocalHeader {
  uint16_t flags, method;
  uint32_t crc;
  uint64_t csize, usize;
  std::string name;
  uint64_t data_offset;
};

// Reads the local header at `offset`; nullopt when the file ends inside it (only asked for by the scan).
std::optional<LocalHeader> read_local_header(const BinaryFile& file, uint64_t offset) {
  unsigned char h[kLocalHeaderBytes];
  if (file.size() - offset < kLocalHeaderBytes) return std::nullopt;
  file.read(offset, h, kLocalHeaderBytes, "zip local header");
  if (le32(h) != kLocalSig)
    fail(file.path(), "byte ", offset, ": expected a zip local file header signature, found ", hex32(le32(h)));
  LocalHeader l;
  l.flags = le16(h + 6);
  l.method = le16(h + 8);
  l.crc = le32(h + 14);
  l.csize = le32(h + 18);
  l.usize = le32(h + 22);
  uint64_t name_len = le16(h + 26), extra_len = le16(h + 28);
  uint64_t rest = offset + kLocalHeaderBytes;
  if (file.size() - rest < name_len + extra_len) return std::nullopt;
  std::string name_extra = file.read_string(rest, name_len + extra_len, "zip local header name");
  l.name = name_extra.substr(0, name_len);
  if (l.csize == kMax32 || l.usize == kMax32) {
    uint64_t usize = l.usize, csize = l.csize;
    read_zip64_extra(file.path(), l.name, reinterpret_cast<const unsigned char*>(name_extra.data()) + name_len,
                     extra_len, l.usize == kMax32 ? &usize : nullptr, l.csize == kMax32 ? &csize : nullptr, nullptr);
    l.usize = usize;
    l.csize = csize;
  }
  l.data_offset = rest + name_len + extra_len;
  return l;
}

void check_supported(const std::string& path, const std::string& name, uint16_t flags, uint16_t method) {
  if (flags & kFlagEncrypted) fail(path, "zip entry '", name, "' is encrypted");
  if (method != 0)
    fail(path, "zip entry '", name, "' is compressed (method ", method,
         "); torch.save stores entries uncompressed and tl reads only stored entries");
}

// Position of the end-of-central-directory record: the last "PK\5\6" whose comment ends exactly at the end of
// the file.
std::optional<uint64_t> find_end_record(const BinaryFile& file) {
  uint64_t size = file.size();
  if (size < kEndBytes) return std::nullopt;
  uint64_t tail = std::min<uint64_t>(size, kEndBytes + 0xFFFF);
  std::string buf = file.read_string(size - tail, tail, "zip end record");
  const auto* b = reinterpret_cast<const unsigned char*>(buf.data());
  for (uint64_t i = tail - kEndBytes + 1; i-- > 0;)
    if (le32(b + i) == kEndSig && i + kEndBytes + le16(b + i + 20) == tail) return size - tail + i;
  return std::nullopt;
}

}  // namespace

uint32_t crc32(const void* data, size_t bytes, uint32_t crc) {
  static const CrcTables tables;
  const auto& t = tables.t;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  while (bytes >= 8) {
    uint32_t lo = le32(p) ^ crc, hi = le32(p + 4);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][hi & 0xFF] ^
          t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    bytes -= 8;
  }
  while (bytes--) crc = t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

namespace {

// Entries from the central directory; each local header is checked against its record.
std::vector<ZipEntry> read_central_directory(const BinaryFile& file, uint64_t end_pos) {
  const std::string& path = file.path();
  unsigned char e[kEndBytes];
  file.read(end_pos, e, kEndBytes, "zip end record");
  uint64_t disk = le16(e + 4), cd_disk = le16(e + 6), n_disk = le16(e + 8), n_total = le16(e + 10);
  uint64_t cd_size = le32(e + 12), cd_offset = le32(e + 16);
  uint64_t cd_limit = end_pos;  // the central directory ends before the end records
  if (end_pos >= kLocator64Bytes) {
    unsigned char loc[kLocator64Bytes];
    file.read(end_pos - kLocator64Bytes, loc, kLocator64Bytes, "zip64 end locator");
    if (le32(loc) == kLocator64Sig) {
      uint64_t end64 = le64(loc + 8);
      if (end64 > end_pos - kLocator64Bytes || end_pos - kLocator64Bytes - end64 < kEnd64Bytes)
        fail(path, "zip64 end record offset ", end64, " is not before its locator at byte ", end_pos - kLocator64Bytes);
      unsigned char r[kEnd64Bytes];
      file.read(end64, r, kEnd64Bytes, "zip64 end record");
      if (le32(r) != kEnd64Sig) fail(path, "byte ", end64, ": expected the zip64 end record signature, found ", hex32(le32(r)));
      disk = le32(r + 16);
      cd_disk = le32(r + 20);
      n_disk = le64(r + 24);
      n_total = le64(r + 32);
      cd_size = le64(r + 40);
      cd_offset = le64(r + 48);
      cd_limit = end64;
    } else if (n_total == 0xFFFF || cd_size == kMax32 || cd_offset == kMax32) {
      fail(path, "zip end record needs ZIP64 values but there is no zip64 end locator");
    }
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n_total) fail(path, "multi-disk zip archives are not supported");
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    fail(path, "zip central directory [", cd_offset, ",", cd_offset + cd_size, ") runs past the end records at byte ",
         cd_limit);
  if (n_total > cd_size / kCentralHeaderBytes)
    fail(path, "zip central directory of ", cd_size, " bytes cannot hold ", n_total, " entries");

  std::string cd = file.read_string(cd_offset, cd_size, "zip central directory");
  const auto* b = reinterpret_cast<const unsigned char*>(cd.data());
  std::vector<ZipEntry> entries;
  uint64_t pos = 0;
  for (uint64_t i = 0; i < n_total; ++i) {
    if (cd_size - pos < kCentralHeaderBytes || le32(b + pos) != kCentralSig)
      fail(path, "byte ", cd_offset + pos, ": expected zip central directory record ", i, " of ", n_total);
    const unsigned char* h = b + pos;
    uint16_t flags = le16(h + 8), method = le16(h + 10);
    uint64_t csize = le32(h + 20), usize = le32(h + 24), offset = le32(h + 42);
    uint64_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
    if (cd_size - pos - kCentralHeaderBytes < name_len + extra_len + comment_len)
      fail(path, "zip central directory record ", i, " runs past the central directory");
    ZipEntry z;
    z.name.assign(reinterpret_cast<const char*>(h + kCentralHeaderBytes), name_len);
    z.crc32 = le32(h + 16);
    if (csize == kMax32 || usize == kMax32 || offset == kMax32)
      read_zip64_extra(path, z.name, h + kCentralHeaderBytes + name_len, extra_len, usize == kMax32 ? &usize : nullptr,
                       csize == kMax32 ? &csize : nullptr, offset == kMax32 ? &offset : nullptr);
    check_supported(path, z.name, flags, method);
    if (csize != usize) fail(path, "zip entry '", z.name, "' is stored but its sizes differ (", csize, " and ", usize, ")");
    if (offset >= cd_offset) fail(path, "zip entry '", z.name, "': local header offset ", offset, " is not before the central directory");
    std::optional<LocalHeader> local = read_local_header(file, offset);
    if (!local) fail(path, "zip entry '", z.name, "': local header at byte ", offset, " runs past the end of the file");
    if (local->name != z.name)
      fail(path, "zip entry '", z.name, "': local header at byte ", offset, " names '", local->name, "'");
    z.header_offset = offset;
    z.data_offset = local->data_offset;
    z.size = csize;
    if (z.data_offset > cd_offset || z.size > cd_offset - z.data_offset)
      fail(path, "zip entry '", z.name, "': payload bytes [", z.data_offset, ",", z.data_offset + z.size,
           ") run past the start of the central directory at byte ", cd_offset, " (the file has ", file.size(), " bytes)");
    entries.push_back(std::move(z));
    pos += kCentralHeaderBytes + name_len + extra_len + comment_len;
  }
  return entries;
}

// Entries found by walking the local headers of an archive without a central directory.
std::vector<ZipEntry> scan_local_headers(const BinaryFile& file) {
  std::vector<ZipEntry> entries;
  uint64_t pos = 0;
  while (file.size() - pos >= 4) {
    unsigned char sig[4];
    file.read(pos, sig, 4, "zip signature");
    uint32_t s = le32(sig);
    if (s == kCentralSig || s == kEndSig || s == kEnd64Sig) break;  // a central directory cut short
    std::optional<LocalHeader> l = read_local_header(file, pos);    // throws on a wrong signature
    if (!l) break;
    check_supported(file.path(), l->name, l->flags, l->method);
    ZipEntry z;
    z.name = l->name;
    z.header_offset = pos;
    z.data_offset = l->data_offset;
    uint64_t present = file.size() - z.data_offset;
    if (l->flags & kFlagDescriptor) {
      std::optional<Descriptor> d = find_descriptor(file, z.data_offset);
      if (!d) {
        z.size = present;
        z.complete = false;
        entries.push_back(std::move(z));
        break;
      }
      z.size = d->size;
      z.crc32 = d->crc;
      pos = d->end;
    } else {
      if (l->csize != l->usize)
        fail(file.path(), "zip entry '", z.name, "' is stored but its sizes differ (", l->csize, " and ", l->usize, ")");
      z.crc32 = l->crc;
      if (l->csize > present) {
        z.size = present;
        z.complete = false;
        entries.push_back(std::move(z));
        break;
      }
      z.size = l->csize;
      pos = z.data_offset + z.size;
    }
    entries.push_back(std::move(z));
  }
  return entries;
}

}  // namespace

ZipReader ZipReader::open(std::shared_ptr<const BinaryFile> file) {
  ZipReader zip;
  zip.file_ = std::move(file);
  const BinaryFile& f = *zip.file_;
  std::optional<uint64_t> end = find_end_record(f);
  zip.has_central_directory_ = end.has_value();
  zip.entries_ = end ? read_central_directory(f, *end) : scan_local_headers(f);
  for (size_t i = 0; i < zip.entries_.size(); ++i)
    if (!zip.index_.emplace(zip.entries_[i].name, i).second)
      fail(f.path(), "zip entry '", zip.entries_[i].name, "' appears twice");
  return zip;
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void ZipReader::read(const ZipEntry& entry, void* dst) const {
  if (!entry.complete)
    fail(path(), "zip entry '", entry.name, "' is truncated: the file ends after ", entry.size, " of its bytes");
  file_->read(entry.data_offset, dst, entry.size, str("zip entry '", entry.name, "'"));
  uint32_t crc = crc32(dst, static_cast<size_t>(entry.size));
  if (crc != entry.crc32)
    fail(path(), "zip entry '", entry.name, "': CRC-32 mismatch (stored ", hex32(entry.crc32), ", computed ", hex32(crc),
         "): the file is corrupt");
}

std::string ZipReader::read_string(const ZipEntry& entry) const {
  std::string s(static_cast<size_t>(entry.size), '\0');  // open() checked the size against the file's
  read(entry, s.data());
  return s;
}

}  // namespace tl
