#pragma once
// Read-only random access to an untrusted file for the checkpoint readers (.pth zip/legacy/tar): positioned reads
// that are checked against the file's size, so a length or offset taken from the file can never read past its end
// unnoticed. Every error is a tl::Error starting with the file's path.
#include <cstdint>
#include <memory>
#include <string>

namespace tl {

class BinaryFile {
 public:
  // Opens a regular file; throws "<path>: cannot open: ..." / "<path>: not a regular file".
  static std::shared_ptr<const BinaryFile> open(const std::string& path);
  ~BinaryFile();
  BinaryFile(const BinaryFile&) = delete;
  BinaryFile& operator=(const BinaryFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }  // at open()

  // Reads exactly `bytes` at `offset` into dst. A range past the end (as opened) throws
  // "<path>: <what> at bytes [offset,offset+bytes) runs past the end of the file (N bytes)".
  void read(uint64_t offset, void* dst, uint64_t bytes, const std::string& what) const;
  std::string read_string(uint64_t offset, uint64_t bytes, const std::string& what) const;
  // Throws "<path>: the file changed size since it was opened" when it did (a checkpoint being rewritten).
  void check_unchanged() const;

 private:
  BinaryFile() = default;
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Little-endian integers from a byte buffer (callers check the bounds).
inline uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t le32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t le64(const unsigned char* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

}  // namespace tl
