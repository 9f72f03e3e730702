// Fuzz target: SafetensorsFile::open() and read() on arbitrary bytes.
//
// The reader works on paths, so each input goes into an in-memory file (memfd) opened through
// /proc/self/fd/N: this runs the real open() — header-length checks included — and the real read()
// of every tensor, with no disk I/O. tl::Error is the expected rejection. Beyond "no crash", the
// target checks what an accepted file promises and aborts (a finding) when a promise is broken:
//   - every error message starts with "<path>: ";
//   - the entries tile the data section exactly, each holding numel * dtype size bytes;
//   - names are unique, non-empty, findable, and never "__metadata__";
//   - read(name) returns the entry's dtype and shape and exactly the file's bytes at its offsets.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "engine/error.h"
#include "weights/safetensors.h"

namespace {

[[noreturn]] void broken_promise(const std::string& what) {
  std::fprintf(stderr, "fuzz_safetensors: %s\n", what.c_str());
  std::abort();
}

// One memfd for the whole run, rewritten for every input.
int memory_file() {
  static const int fd = [] {
    int f = ::memfd_create("tl_fuzz_safetensors", MFD_CLOEXEC);
    if (f < 0) broken_promise(std::string("memfd_create failed: ") + std::strerror(errno));
    return f;
  }();
  return fd;
}

void fill(int fd, const uint8_t* data, size_t size) {
  if (::ftruncate(fd, 0) != 0) broken_promise("ftruncate failed");
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) broken_promise("pwrite to the memfd failed");
    done += static_cast<size_t>(n);
  }
}

void check_accepted(const tl::SafetensorsFile& file, const uint8_t* data, size_t size) {
  // open() accepted it, so the 8-byte length and the header fit in the input.
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | data[i];
  if (size < 8 || header_bytes > size - 8) broken_promise("accepted a header length past the end of the input");
  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = size - data_start;

  std::set<std::string> names;
  uint64_t total = 0;
  for (const tl::SafetensorsEntry& e : file.entries()) {
    if (e.name.empty() || e.name == "__metadata__") broken_promise("accepted entry name '" + e.name + "'");
    if (!names.insert(e.name).second) broken_promise("duplicate entry '" + e.name + "'");
    if (file.find(e.name) != &e) broken_promise("find() does not return entry '" + e.name + "'");
    if (e.begin > e.end || e.end > data_bytes) broken_promise("entry '" + e.name + "' outside the data section");
    const uint64_t nbytes = e.end - e.begin;
    if (nbytes != static_cast<uint64_t>(tl::shape_numel(e.shape)) * tl::dtype_size(e.dtype))
      broken_promise("entry '" + e.name + "' byte count differs from numel * dtype size");
    total += nbytes;

    tl::Tensor t = file.read(e.name);
    if (t.shape() != e.shape || t.dtype() != e.dtype || t.nbytes() != nbytes)
      broken_promise("read('" + e.name + "') returned a different dtype or shape");
    if (nbytes && std::memcmp(t.raw(), data + data_start + e.begin, nbytes) != 0)
      broken_promise("read('" + e.name + "') returned bytes that are not the file's");
  }
  // Non-overlapping (checked by the reader) and summing to the section means an exact tiling.
  if (total != data_bytes) broken_promise("entries do not cover the data section exactly");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memory_file();
  fill(fd, data, size);
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    tl::SafetensorsFile file = tl::SafetensorsFile::open(path);
    check_accepted(file, data, size);
  } catch (const tl::Error& e) {
    if (std::string(e.what()).rfind(path + ": ", 0) != 0)
      broken_promise(std::string("error does not start with the path: ") + e.what());
  }
  return 0;
}
