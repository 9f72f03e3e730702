#pragma once
// The zip container of torch.save (PyTorch >= 1.6): stored (uncompressed) entries "<archive>/data.pkl",
// "<archive>/data/<key>", "<archive>/version", written by miniz with data descriptors (general-purpose flag bit 3:
// the local header carries no sizes) and a ZIP64 end record. Only what such archives use is accepted: stored
// entries, one disk, no encryption; a compressed entry is named and refused.
//
// Directory: from the central directory when the archive has one (ZIP64 sizes, offsets and end records are
// read). A file cut short (an interrupted download) has none; then the local headers are walked from byte 0:
//   - an entry whose local header carries its size (flag bit 3 clear) ends where that size says;
//   - an entry with a data descriptor (flag bit 3) is ended by the first "PK\7\8" signature at position p
//     after its payload start s whose descriptor describes exactly the bytes before it: compressed size ==
//     uncompressed size == p - s (32-bit fields, or 64-bit ZIP64 fields), CRC-32 of bytes [s, p) == the
//     descriptor's CRC, and the descriptor is followed by the next record's signature (local header, central
//     directory, end record) or by the end of the file. Payload bytes that merely look like a descriptor fail
//     these tests: a false match needs the 4 bytes after the look-alike to equal the CRC of everything before
//     it (odds 2^-32), the sizes to match, and a signature after it. (A payload that begins with "PK\7\8" and 12
//     zero bytes is a valid descriptor of an empty payload; only what follows it tells it apart.)
//     Descriptors without a signature (allowed by APPNOTE, never written by torch) are not recognised.
//   - the walk stops at the first central-directory record (a cut central directory), at a header cut short,
//     or at an entry whose payload runs past the end of the file, which is kept as incomplete (complete = false,
//     size = the bytes present).
// Every offset and size is checked against the file size before it is used. Errors: tl::Error "<path>: ...".
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "weights/binary_file.h"

namespace tl {

struct ZipEntry {
  std::string name;
  uint64_t header_offset = 0;  // local file header
  uint64_t data_offset = 0;    // first payload byte
  uint64_t size = 0;           // payload bytes; for an incomplete entry, the bytes the file holds
  uint32_t crc32 = 0;          // of the whole payload (unknown for an incomplete entry)
  bool complete = true;        // false: the file ends inside this entry's payload
};

class ZipReader {
 public:
  // Throws "<path>: ..." for anything that is not a readable zip of stored entries.
  static ZipReader open(std::shared_ptr<const BinaryFile> file);

  const std::string& path() const { return file_->path(); }
  bool has_central_directory() const { return has_central_directory_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }  // in file order
  const ZipEntry* find(const std::string& name) const;

  // Reads all of a complete entry's payload (entry.size bytes) into dst and checks its CRC-32.
  void read(const ZipEntry& entry, void* dst) const;
  std::string read_string(const ZipEntry& entry) const;

 private:
  std::shared_ptr<const BinaryFile> file_;
  bool has_central_directory_ = false;
  std::vector<ZipEntry> entries_;
  std::map<std::string, size_t> index_;
};

// CRC-32 (ISO-HDLC, as zip and zlib use), continuing from `crc` (0 to start).
uint32_t crc32(const void* data, size_t bytes, uint32_t crc = 0);

}  // namespace tl
