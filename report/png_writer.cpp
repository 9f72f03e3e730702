#include "report/png_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "engine/error.h"

#ifdef TL_HAVE_ZLIB
#include <zlib.h>
#endif

namespace tl::report {
namespace {

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// length, type, data, CRC over type and data.
void put_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_be32(out, crc32(out.data() + type_at, 4 + data.size()));
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  const auto& table = crc_table();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler) {
  constexpr uint32_t kMod = 65521;
  uint32_t a = adler & 0xFFFF, b = adler >> 16;
  while (size > 0) {
    // 5552 is the largest run for which b cannot overflow 32 bits before the reduction (zlib's NMAX).
    size_t run = size < 5552 ? size : 5552;
    for (size_t i = 0; i < run; ++i) {
      a += data[i];
      b += a;
    }
    a %= kMod;
    b %= kMod;
    data += run;
    size -= run;
  }
  return (b << 16) | a;
}

std::vector<uint8_t> zlib_stored(const uint8_t* data, size_t size) {
  constexpr size_t kMaxBlock = 65535;  // LEN is 16 bits
  std::vector<uint8_t> out;
  out.reserve(size + 6 + 5 * (size / kMaxBlock + 1));
  // CMF 0x78: deflate, 32K window. FLG 0x01: no dictionary, level "fastest", FCHECK making 0x7801 % 31 == 0.
  out.push_back(0x78);
  out.push_back(0x01);
  size_t done = 0;
  do {
    size_t len = size - done < kMaxBlock ? size - done : kMaxBlock;
    bool final = done + len == size;
    out.push_back(final ? 0x01 : 0x00);  // BFINAL bit, BTYPE 00 (stored); the rest of the byte is padding
    out.push_back(static_cast<uint8_t>(len));
    out.push_back(static_cast<uint8_t>(len >> 8));
    out.push_back(static_cast<uint8_t>(~len));
    out.push_back(static_cast<uint8_t>(~len >> 8));
    out.insert(out.end(), data + done, data + done + len);
    done += len;
  } while (done < size);
  put_be32(out, adler32(data, size));
  return out;
}

std::vector<uint8_t> encode_png(int width, int height, const std::vector<uint8_t>& rgb, bool use_zlib) {
  // PNG allows up to 2^31-1 per side; a report image larger than 32768 is a bug in the caller.
  TL_CHECK(width > 0 && height > 0 && width <= 32768 && height <= 32768, "png: image size ", width, "x", height,
           " is outside 1..32768");
  size_t row = static_cast<size_t>(width) * 3;
  TL_CHECK(rgb.size() == row * height, "png: ", width, "x", height, " RGB needs ", row * height, " bytes, got ",
           rgb.size());

  // Each row is prefixed with its filter type; 0 (None) keeps the data exactly the pixels.
  std::vector<uint8_t> raw;
  raw.reserve((row + 1) * height);
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), rgb.begin() + y * row, rgb.begin() + (y + 1) * row);
  }

  std::vector<uint8_t> idat;
#ifdef TL_HAVE_ZLIB
  if (use_zlib) {
    uLongf bound = compressBound(static_cast<uLong>(raw.size()));
    idat.resize(bound);
    int rc = compress2(idat.data(), &bound, raw.data(), static_cast<uLong>(raw.size()), 6);
    TL_CHECK(rc == Z_OK, "png: zlib compress2 failed with code ", rc);
    idat.resize(bound);
  }
#endif
  if (idat.empty()) idat = zlib_stored(raw.data(), raw.size());

  std::vector<uint8_t> ihdr;
  put_be32(ihdr, static_cast<uint32_t>(width));
  put_be32(ihdr, static_cast<uint32_t>(height));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace

  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  png.reserve(8 + 25 + idat.size() + 12 + 12);
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", idat);
  put_chunk(png, "IEND", {});
  return png;
}

void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  std::vector<uint8_t> png;
  try {
    png = encode_png(width, height, rgb);
  } catch (const Error& e) {
    throw Error(str(path, ": ", e.what()));
  }
  write_file_atomically(path, png.data(), png.size());
}

void write_file_atomically(const std::string& path, const void* data, size_t size) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str(path, ": cannot create ", tmp, ": ", std::strerror(errno)));
  // Any failure after the open removes the temporary file, so `path` is either the old file or the whole new one.
  auto fail = [&](const char* what) {
    std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(str(path, ": ", what, tmp, ": ", reason));
  };
  const char* p = static_cast<const char*>(data);
  for (size_t left = size; left > 0;) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write ");
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot fsync ");
  int closing = fd;
  fd = -1;
  if (::close(closing) != 0) fail("cannot close ");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename over it ");
}

}  // namespace tl::report
