#include "weights/binary_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/error.h"

namespace tl {

namespace {
uint64_t stat_size(const std::string& path, int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw Error(str(path, ": cannot stat: ", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw Error(str(path, ": not a regular file"));
  return static_cast<uint64_t>(st.st_size);
}
}  // namespace

std::shared_ptr<const BinaryFile> BinaryFile::open(const std::string& path) {
  std::shared_ptr<BinaryFile> f(new BinaryFile());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) throw Error(str(path, ": cannot open: ", std::strerror(errno)));
  f->size_ = stat_size(path, f->fd_);
  return f;
}

BinaryFile::~BinaryFile() {
  if (fd_ >= 0) ::close(fd_);
}

void BinaryFile::read(uint64_t offset, void* dst, uint64_t bytes, const std::string& what) const {
  if (offset > size_ || bytes > size_ - offset)
    throw Error(str(path_, ": ", what, " at bytes [", offset, ",", offset + bytes, ") runs past the end of the file (",
                    size_, " bytes)"));
  char* p = static_cast<char*>(dst);
  while (bytes > 0) {
    ssize_t n = ::pread(fd_, p, static_cast<size_t>(std::min<uint64_t>(bytes, 1u << 30)), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(str(path_, ": cannot read ", what, ": ", std::strerror(errno)));
    if (n == 0) throw Error(str(path_, ": unexpected end of file reading ", what, " (was the file changed?)"));
    p += n;
    bytes -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

std::string BinaryFile::read_string(uint64_t offset, uint64_t bytes, const std::string& what) const {
  if (offset > size_ || bytes > size_ - offset) read(offset, nullptr, bytes, what);  // throws the range error
  std::string s(static_cast<size_t>(bytes), '\0');
  read(offset, s.data(), bytes, what);
  return s;
}

void BinaryFile::check_unchanged() const {
  if (stat_size(path_, fd_) != size_) throw Error(str(path_, ": the file changed size since it was opened"));
}

}  // namespace tl
