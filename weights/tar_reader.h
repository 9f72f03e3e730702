#pragma once
// The tar container of PyTorch's pre-0.4 checkpoints (torch.save before 2018, e.g. torchvision's
// resnet18-5c106cde.pth): a POSIX/pax tar of members sys_info, pickle, tensors and storages, each preceded by a pax
// extended header ("././@PaxHeader", holding a float mtime).
//
// Read: 512-byte ustar/v7 headers whose checksum is verified (unsigned sum, or the historic signed sum), octal or
// base-256 sizes, pax extended headers ('x': "path" and "size" override the next member's), GNU long names ('L');
// other member types (directories, links, global pax headers) are skipped. The walk ends at the end-of-archive
// zero block, or where the file ends: a file cut short inside a member keeps that member as incomplete (present <
// size), so a caller can use the members that are whole. Every size is checked against the file size before use.
// Errors: tl::Error "<path>: tar header at byte N ('name'): ...".
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "weights/binary_file.h"

namespace tl {

constexpr uint64_t kTarBlock = 512;

struct TarMember {
  std::string name;
  uint64_t header_offset = 0;  // its own header (after any pax header)
  uint64_t data_offset = 0;
  uint64_t size = 0;     // as the header declares it
  uint64_t present = 0;  // bytes of it the file holds: == size unless the file ends inside the member
  bool complete() const { return present == size; }
};

class TarReader {
 public:
  static TarReader open(std::shared_ptr<const BinaryFile> file);

  const std::string& path() const { return file_->path(); }
  const std::vector<TarMember>& members() const { return members_; }  // regular files, in file order
  const TarMember* find(const std::string& name) const;
  bool truncated() const { return truncated_; }  // the file ends before the end-of-archive block
  // The whole of a complete member; throws "<path>: tar member 'x' is truncated: ..." otherwise.
  std::string read_string(const TarMember& member) const;

 private:
  std::shared_ptr<const BinaryFile> file_;
  std::vector<TarMember> members_;
  std::map<std::string, size_t> index_;
  bool truncated_ = false;
};

// Whether a 512-byte block is a tar header: the ustar magic, or a v7 header whose checksum matches.
bool is_tar_header(const unsigned char* block);

}  // namespace tl
