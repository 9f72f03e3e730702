#include "loaders/image.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "engine/error.h"

#ifdef TL_HAVE_STB
// The one stb_image implementation in tl. Static functions: no clash with another copy of stb linked
// elsewhere. Only the four formats we promise: stb's TGA detector accepts almost any bytes, so leaving it
// in would let a text file named .jpg "decode".
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_MAX_DIMENSIONS (1 << 15)
#define STBI_FAILURE_USERMSG  // "Corrupt JPEG" rather than "expected marker"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb_image.h>
#pragma GCC diagnostic pop
#endif

namespace tl {

namespace {

// Larger files are not images we could hold anyway (the pixel cap is 805 MB of RGB).
constexpr size_t kMaxImageFileBytes = size_t(1) << 30;

enum class Format { Unknown, Jpeg, Png, Bmp, Gif };

Format sniff(const uint8_t* d, size_t n) {
  if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return Format::Jpeg;
  if (n >= 8 && !std::memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return Format::Png;
  if (n >= 6 && (!std::memcmp(d, "GIF87a", 6) || !std::memcmp(d, "GIF89a", 6))) return Format::Gif;
  if (n >= 2 && d[0] == 'B' && d[1] == 'M') return Format::Bmp;
  return Format::Unknown;
}

const char* format_name(Format f) {
  switch (f) {
    case Format::Jpeg: return "JPEG";
    case Format::Png: return "PNG";
    case Format::Bmp: return "BMP";
    case Format::Gif: return "GIF";
    default: return "unknown";
  }
}

std::string leading_bytes(const uint8_t* d, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n && i < 8; ++i) {
    if (i) out += ' ';
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

uint32_t le16(const uint8_t* p) { return p[0] | p[1] << 8; }
uint32_t le32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24; }

// stb_image reads zeros past the end of a BMP or GIF and reports success, so a truncated file would decode
// into an image with a black or garbage bottom. These checks find the end of the pixel data first.
// BMP: uncompressed (BI_RGB / BI_BITFIELDS) pixel rows must all be inside the file.
void check_bmp_complete(const uint8_t* d, size_t n, const std::string& name) {
  TL_CHECK(n >= 26, name, ": BMP header is truncated (", n, " bytes)");
  uint64_t data_offset = le32(d + 10), header_size = le32(d + 14);
  int64_t width, height;
  uint32_t bpp, compression = 0;
  if (header_size == 12) {  // OS/2 BITMAPCOREHEADER
    width = le16(d + 18), height = le16(d + 20), bpp = le16(d + 24);
  } else {
    TL_CHECK(n >= 34, name, ": BMP header is truncated (", n, " bytes)");
    width = static_cast<int32_t>(le32(d + 18)), height = static_cast<int32_t>(le32(d + 22));
    bpp = le16(d + 28), compression = le32(d + 30);
  }
  if (compression != 0 && compression != 3 && compression != 6) return;  // RLE: stb rejects it itself
  if (width <= 0 || height == 0 || width > kMaxImageSide || std::abs(height) > kMaxImageSide) return;  // stb reports
  uint64_t row_bytes = (uint64_t(bpp) * uint64_t(width) + 31) / 32 * 4;
  uint64_t needed = data_offset + row_bytes * uint64_t(std::abs(height));
  TL_CHECK(needed <= n, name, ": BMP is truncated: its pixel rows need ", needed, " bytes, the file holds ", n);
}

// GIF: walk the blocks up to the end of the first image's LZW data (the frame decode_image returns).
void check_gif_complete(const uint8_t* d, size_t n, const std::string& name) {
  auto truncated = [&](const char* where) {
    return Error(str(name, ": GIF is truncated (the file ends in the ", where, " at byte ", n, ")"));
  };
  size_t pos = 13;
  if (n < pos) throw truncated("header");
  if (d[10] & 0x80) pos += 3u << ((d[10] & 7) + 1);  // global colour table
  auto skip_sub_blocks = [&](const char* where) {
    for (;;) {
      if (pos >= n) throw truncated(where);
      uint8_t size = d[pos++];
      if (size == 0) return;
      pos += size;
    }
  };
  for (;;) {
    if (pos >= n) throw truncated("block list");
    uint8_t block = d[pos++];
    if (block == 0x21) {  // extension: label, then data sub-blocks
      pos += 1;
      skip_sub_blocks("extension");
    } else if (block == 0x2C) {  // image descriptor, optional local colour table, LZW code size, data
      if (pos + 9 > n) throw truncated("image descriptor");
      uint8_t packed = d[pos + 8];
      pos += 9;
      if (packed & 0x80) pos += 3u << ((packed & 7) + 1);
      pos += 1;
      skip_sub_blocks("image data");
      return;
    } else if (block == 0x3B) {
      throw Error(str(name, ": GIF holds no image (trailer before the first frame)"));
    } else {
      throw Error(str(name, ": GIF is corrupt (unknown block 0x", leading_bytes(&block, 1), " at byte ", pos - 1, ")"));
    }
  }
}

}  // namespace

#ifdef TL_HAVE_STB

bool image_decoding_supported() { return true; }

Image decode_image_bytes(const uint8_t* data, size_t size, const std::string& name) {
  TL_CHECK(size > 0, name, ": empty file (0 bytes), not an image");
  Format format = sniff(data, size);
  TL_CHECK(format != Format::Unknown, name, ": not a JPEG, PNG, BMP or GIF image (it starts with bytes ",
           leading_bytes(data, size), ")");
  TL_CHECK(size <= static_cast<size_t>(INT32_MAX), name, ": file too large for an image (", size, " bytes)");
  if (format == Format::Bmp) check_bmp_complete(data, size, name);
  if (format == Format::Gif) check_gif_complete(data, size, name);

  int len = static_cast<int>(size), width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(data, len, &width, &height, &channels)) {
    // stbi_info reports every format-specific failure as "unknown image type"; the loader stops at the same
    // header problem and says what it is.
    stbi_image_free(stbi_load_from_memory(data, len, &width, &height, &channels, 3));
    throw Error(str(name, ": cannot read the ", format_name(format), " header: ", stbi_failure_reason()));
  }
  TL_CHECK(width > 0 && height > 0 && width <= kMaxImageSide && height <= kMaxImageSide &&
               int64_t(width) * height <= kMaxImagePixels,
           name, ": ", format_name(format), " image of ", width, "x", height, " pixels exceeds the limits (",
           kMaxImageSide, " per side, ", kMaxImagePixels, " pixels)");

  int got_w = 0, got_h = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(data, len, &got_w, &got_h, &channels, 3),
                                                   stbi_image_free);
  if (!pixels) {
    throw Error(str(name, ": cannot decode ", format_name(format), " image: ", stbi_failure_reason(),
                    " (corrupt or truncated file)"));
  }
  TL_CHECK(got_w == width && got_h == height, name, ": decoder returned ", got_w, "x", got_h, ", header said ",
           width, "x", height);
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.assign(pixels.get(), pixels.get() + size_t(width) * height * 3);
  return image;
}

#else

bool image_decoding_supported() { return false; }

Image decode_image_bytes(const uint8_t*, size_t, const std::string& name) {
  throw Error(str(name, ": cannot decode images: tl was built without stb_image (install libstb-dev or pass "
                        "-DTL_DEPS_DIR with stb/stb_image.h)"));
}

#endif

Image decode_image(const std::string& path) {
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::error_code ec;
  TL_CHECK(!std::filesystem::is_directory(path, ec), path, ": is a directory, not an image");
  std::unique_ptr<std::FILE, Closer> file(std::fopen(path.c_str(), "rb"));
  TL_CHECK(file, path, ": cannot open image: ", std::strerror(errno));
  TL_CHECK(std::fseek(file.get(), 0, SEEK_END) == 0, path, ": cannot seek: ", std::strerror(errno));
  long end = std::ftell(file.get());
  TL_CHECK(end >= 0, path, ": cannot read: ", std::strerror(errno));
  TL_CHECK(static_cast<size_t>(end) <= kMaxImageFileBytes, path, ": ", end, " bytes is larger than any image tl reads");
  std::rewind(file.get());
  std::vector<uint8_t> bytes(static_cast<size_t>(end));
  size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), file.get());
  TL_CHECK(got == bytes.size(), path, ": read ", got, " of ", bytes.size(), " bytes");
  return decode_image_bytes(bytes.data(), bytes.size(), path);
}

}  // namespace tl
