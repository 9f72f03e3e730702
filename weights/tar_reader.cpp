#include "weights/tar_reader.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "engine/error.h"

namespace tl {

namespace {

constexpr uint64_t kMaxExtendedHeader = 1 << 20;  // pax records and GNU long names; real ones are tens of bytes

template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(str(path, ": ", args...));
}

std::string field_string(const unsigned char* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

// An octal numeric field (leading spaces, digits, then NUL/space padding) or GNU base-256 (high bit of the first
// byte set; positive values only). nullopt when malformed.
std::optional<uint64_t> numeric_field(const unsigned char* p, size_t n) {
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t v = 0;
  if (p[0] & 0x80) {
    if (p[0] != 0x80) return std::nullopt;  // negative, or more than 64 bits
    for (size_t i = 1; i < n; ++i) {
      if (v > (kMax >> 8)) return std::nullopt;
      v = (v << 8) | p[i];
    }
    return v;
  }
  size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  size_t digits = 0;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i, ++digits) {
    if (v > (kMax >> 3)) return std::nullopt;
    v = (v << 3) | static_cast<uint64_t>(p[i] - '0');
  }
  for (; i < n; ++i)
    if (p[i] != ' ' && p[i] != 0) return std::nullopt;
  if (digits == 0) return std::nullopt;
  return v;
}

// Checksum of a header with its checksum field counted as spaces: unsigned and (historic) signed byte sums.
void header_sums(const unsigned char* b, int64_t& unsigned_sum, int64_t& signed_sum) {
  unsigned_sum = signed_sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) {
    unsigned char c = (i >= 148 && i < 156) ? ' ' : b[i];
    unsigned_sum += c;
    signed_sum += static_cast<signed char>(c);
  }
}

bool all_zero(const unsigned char* b) {
  return std::all_of(b, b + kTarBlock, [](unsigned char c) { return c == 0; });
}

uint64_t round_up_block(uint64_t n) { return n + (kTarBlock - n % kTarBlock) % kTarBlock; }

// Pax extended header records "<len> <key>=<value>\n"; applies "path" and "size".
void apply_pax(const std::string& path, uint64_t at, const std::string& data, std::optional<std::string>& name,
               int64_t& size) {
  size_t pos = 0;
  while (pos < data.size()) {
    size_t space = data.find(' ', pos);
    if (space == std::string::npos) fail(path, "tar pax header at byte ", at, ": record without a length");
    uint64_t len = 0;
    for (size_t i = pos; i < space; ++i) {
      if (data[i] < '0' || data[i] > '9' || len > data.size()) fail(path, "tar pax header at byte ", at, ": bad record length");
      len = len * 10 + static_cast<uint64_t>(data[i] - '0');
    }
    if (len <= space - pos + 1 || len > data.size() - pos || data[pos + len - 1] != '\n')
      fail(path, "tar pax header at byte ", at, ": record length ", len, " does not fit the header");
    std::string record = data.substr(space + 1, pos + len - 1 - (space + 1));
    size_t eq = record.find('=');
    if (eq == std::string::npos) fail(path, "tar pax header at byte ", at, ": record without '='");
    std::string key = record.substr(0, eq), value = record.substr(eq + 1);
    if (key == "path") name = value;
    if (key == "size") {
      if (value.empty() || value.size() > 18 || value.find_first_not_of("0123456789") != std::string::npos)
        fail(path, "tar pax header at byte ", at, ": size '", value, "' is not a decimal number");
      size = std::stoll(value);
    }
    pos += len;
  }
}

}  // namespace

bool is_tar_header(const unsigned char* b) {
  if (std::memcmp(b + 257, "ustar", 5) == 0) return true;
  std::optional<uint64_t> stored = numeric_field(b + 148, 8);
  int64_t u, s;
  header_sums(b, u, s);
  return stored && !all_zero(b) && (static_cast<int64_t>(*stored) == u || static_cast<int64_t>(*stored) == s);
}

TarReader TarReader::open(std::shared_ptr<const BinaryFile> file) {
  TarReader tar;
  tar.file_ = std::move(file);
  const BinaryFile& f = *tar.file_;
  const std::string& path = f.path();
  std::optional<std::string> next_name;  // from a pax 'x' header or a GNU 'L' long name
  int64_t next_size = -1;  // from a pax 'x' header; -1: none
  uint64_t pos = 0;
  unsigned char b[kTarBlock];
  while (true) {
    if (f.size() - pos < kTarBlock) {  // no end-of-archive block: the file was cut (or a header was)
      tar.truncated_ = true;
      break;
    }
    f.read(pos, b, kTarBlock, "tar header");
    if (all_zero(b)) break;
    std::string name = field_string(b, 100);
    if (std::memcmp(b + 257, "ustar\0", 6) == 0) {  // POSIX ustar: a prefix extends the name
      std::string prefix = field_string(b + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    std::optional<uint64_t> stored = numeric_field(b + 148, 8);
    int64_t unsigned_sum, signed_sum;
    header_sums(b, unsigned_sum, signed_sum);
    if (!stored) fail(path, "tar header at byte ", pos, " ('", name, "'): checksum field is not an octal number");
    if (static_cast<int64_t>(*stored) != unsigned_sum && static_cast<int64_t>(*stored) != signed_sum)
      fail(path, "tar header at byte ", pos, " ('", name, "'): checksum mismatch (header says ", *stored,
           ", its bytes sum to ", unsigned_sum, "): the file is corrupt");
    std::optional<uint64_t> header_size = numeric_field(b + 124, 12);
    if (!header_size) fail(path, "tar header at byte ", pos, " ('", name, "'): size field is not a number");
    char type = static_cast<char>(b[156]);
    bool extended = type == 'x' || type == 'g' || type == 'L';
    uint64_t size = (!extended && next_size >= 0) ? static_cast<uint64_t>(next_size) : *header_size;
    if (!extended && next_name) name = *next_name;
    uint64_t data = pos + kTarBlock;
    uint64_t present = std::min(size, f.size() - data);

    if (type == 'x' || type == 'L') {
      if (size > kMaxExtendedHeader)
        fail(path, "tar header at byte ", pos, ": extended header of ", size, " bytes (at most ", kMaxExtendedHeader, ")");
      if (present < size) {
        tar.truncated_ = true;
        break;
      }
      std::string content = f.read_string(data, size, "tar extended header");
      if (type == 'x') {
        apply_pax(path, pos, content, next_name, next_size);
      } else {
        next_name = field_string(reinterpret_cast<const unsigned char*>(content.data()), content.size());
      }
    } else if (!extended) {
      next_name.reset();
      next_size = -1;
      if (type == '0' || type == '\0' || type == '7') {
        TarMember m{name, pos, data, size, present};
        if (!tar.index_.emplace(name, tar.members_.size()).second)
          fail(path, "tar header at byte ", pos, ": member '", name, "' appears twice");
        tar.members_.push_back(m);
      }
      if (present < size) {
        tar.truncated_ = true;
        break;
      }
    }
    uint64_t padded = round_up_block(size);
    if (padded > f.size() - data) {  // the member is whole but its padding (or the archive end) is cut
      tar.truncated_ = true;
      break;
    }
    pos = data + padded;
  }
  return tar;
}

const TarMember* TarReader::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &members_[it->second];
}

std::string TarReader::read_string(const TarMember& m) const {
  if (!m.complete())
    fail(path(), "tar member '", m.name, "' is truncated: it has ", m.size, " bytes, the file holds ", m.present);
  return file_->read_string(m.data_offset, m.size, str("tar member '", m.name, "'"));
}

}  // namespace tl
