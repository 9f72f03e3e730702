#pragma once
// A small PNG encoder for the training reports: 8-bit RGB (colour type 2), filter 0 on every row, one IDAT.
// With zlib (TL_HAVE_ZLIB) the image data is deflated; without it, or when asked, it is wrapped in stored
// (uncompressed) deflate blocks, so a report never depends on zlib being present.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tl::report {

// Writes an 8-bit RGB PNG; rgb holds width*height*3 bytes, rows top to bottom. The file is written atomically
// (a temporary file beside it, renamed over it). Errors name the path.
void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

// The PNG file's bytes. use_zlib = false (or a build without zlib) uses stored deflate blocks.
std::vector<uint8_t> encode_png(int width, int height, const std::vector<uint8_t>& rgb, bool use_zlib = true);

// A zlib stream (RFC 1950) of `data` in stored deflate blocks (RFC 1951 BTYPE 00), with its Adler-32 trailer.
std::vector<uint8_t> zlib_stored(const uint8_t* data, size_t size);

// Checksums as PNG and zlib define them (initial value, then running): CRC-32 (ISO 3309) and Adler-32.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);
uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler = 1);

// Writes bytes to `path` atomically: `path.tmp-<pid>`, fsynced, renamed over `path`. Errors name the path.
void write_file_atomically(const std::string& path, const void* data, size_t size);

}  // namespace tl::report
