#pragma once
// SHA-256 (FIPS 180-4), streaming: checkpoints are hashed as they are read, in fixed-size chunks, so a
// 500 MB file never has to sit in memory. Used to identify downloaded weights against the manifest and
// to record the source of a converted checkpoint.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tl {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // Pads, finishes and returns the 32-byte digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> finish();
  // finish() as 64 lowercase hex digits.
  std::string finish_hex();

 private:
  void compress(const uint8_t* block);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

std::string sha256_hex(std::string_view bytes);
// Hash of a whole file, read in 1 MiB chunks; throws tl::Error "path: ..." when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace tl
