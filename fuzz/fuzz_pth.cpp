// Fuzz target: PthFile::open() and read() (weights/pth.h) on arbitrary bytes -- the zip, legacy-stream and tar
// layouts, with their container readers (weights/zip_reader.h, tar_reader.h, binary_file.h) and the unpickler.
//
// Like fuzz_safetensors.cpp, each input goes into an in-memory file (memfd) opened through /proc/self/fd/N, so the
// real open() and read() run on it without disk I/O. tl::Error is the expected rejection, from open() and from
// each read(). Beyond "no crash", the target aborts (a finding) when a promise of weights/pth.h is broken:
//   - an error message (open, read, read_all) does not start with "<path>: ";
//   - format() is not the layout the file's first bytes announce (zip signature, pickle PROTO, else tar);
//   - an entry's name is not unique or not findable; its stride and size differ in rank, its rank is over 64, a
//     size, stride or offset is negative, or its element count overflows 63 bits;
//   - an entry's dtype is not what its storage type reads as (Float/Half/BFloat16 -> F32, Double -> F64, the
//     integer types -> I64), or its storage type is one open() should have refused;
//   - read() of an entry returns an undefined tensor, one not on the CPU, or one of another dtype or shape;
//   - read() of a name that is not there does anything but throw tl::Error;
//   - read_all() disagrees with read(): it must fail when a read() failed, and otherwise return every entry in
//     state_dict order with read()'s dtype, shape and bytes.
// A file may legitimately expand a stored element up to 16x (plus 16M elements) per tensor, so a small input can
// ask for hundreds of MB across many tensors; entries are read only while their output stays within a budget per
// input (and read_all() only when every entry fit), so that the target itself stays fast and small.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/error.h"
#include "weights/pth.h"

namespace {

constexpr uint64_t kReadBudgetBytes = 64ull << 20;  // tensor bytes read per input
constexpr size_t kMaxRank = 64;

[[noreturn]] void broken_promise(const std::string& what) {
  std::fprintf(stderr, "fuzz_pth: %s\n", what.c_str());
  std::abort();
}

// One memfd for the whole run, rewritten for every input.
int memory_file() {
  static const int fd = [] {
    int f = ::memfd_create("tl_fuzz_pth", MFD_CLOEXEC);
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

void check_error(const tl::Error& e, const std::string& path, const char* during) {
  if (std::string(e.what()).rfind(path + ": ", 0) != 0)
    broken_promise(std::string(during) + ": error does not start with the path: " + e.what());
}

// The layout PthFile::open() must have picked from the first bytes, as weights/pth.h describes them.
std::string expected_format(const uint8_t* data, size_t size) {
  if (size >= 4 && data[0] == 'P' && data[1] == 'K' &&
      ((data[2] == 3 && data[3] == 4) || (data[2] == 5 && data[3] == 6)))
    return "pth-zip";
  if (size >= 1 && data[0] == 0x80) return "pth-legacy";
  return "pth-tar";
}

const std::map<std::string, tl::DType> kStorageDType = {
    {"FloatStorage", tl::DType::F32}, {"HalfStorage", tl::DType::F32}, {"BFloat16Storage", tl::DType::F32},
    {"DoubleStorage", tl::DType::F64}, {"LongStorage", tl::DType::I64}, {"IntStorage", tl::DType::I64},
    {"ShortStorage", tl::DType::I64}, {"CharStorage", tl::DType::I64}, {"ByteStorage", tl::DType::I64},
    {"BoolStorage", tl::DType::I64},
};

// Elements of the entry, or a finding when the count does not fit 63 bits (open() must have refused it).
uint64_t checked_numel(const tl::PthEntry& e) {
  constexpr uint64_t kMax63 = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t n = 1;
  for (int64_t d : e.shape) {
    if (d != 0 && n > kMax63 / static_cast<uint64_t>(d)) broken_promise("entry '" + e.name + "': numel overflows");
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

void check_entry(const tl::PthFile& file, const tl::PthEntry& e) {
  if (file.find(e.name) != &e) broken_promise("find() does not return entry '" + e.name + "'");
  if (e.stride.size() != e.shape.size()) broken_promise("entry '" + e.name + "': stride and size differ in rank");
  if (e.shape.size() > kMaxRank) broken_promise("entry '" + e.name + "' has more than 64 dimensions");
  if (e.storage_offset < 0) broken_promise("entry '" + e.name + "' has a negative storage offset");
  for (size_t d = 0; d < e.shape.size(); ++d)
    if (e.shape[d] < 0 || e.stride[d] < 0) broken_promise("entry '" + e.name + "' has a negative size or stride");
  auto type = kStorageDType.find(e.storage_type);
  if (type == kStorageDType.end()) broken_promise("entry '" + e.name + "' has storage type '" + e.storage_type + "'");
  if (type->second != e.dtype) broken_promise("entry '" + e.name + "': dtype differs from its " + e.storage_type);
}

void check_tensor(const tl::PthEntry& e, const tl::Tensor& t) {
  if (!t.defined()) broken_promise("read('" + e.name + "') returned an undefined tensor");
  if (t.device() != tl::Device::CPU) broken_promise("read('" + e.name + "') returned a tensor not on the CPU");
  if (t.dtype() != e.dtype || t.shape() != e.shape)
    broken_promise("read('" + e.name + "') returned " + t.describe() + ", the entry is " + tl::dtype_name(e.dtype) +
                   tl::shape_str(e.shape));
}

bool same_bytes(const tl::Tensor& a, const tl::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

// read_all() must agree with reading each entry: fail when one failed, else return the same tensors in order.
void check_read_all(const tl::PthFile& file, const std::string& path, const std::vector<tl::Tensor>& read,
                    bool any_failed) {
  tl::ImportedCheckpoint all;
  try {
    all = file.read_all();
  } catch (const tl::Error& e) {
    check_error(e, path, "read_all()");
    if (!any_failed) broken_promise(std::string("read_all() failed where every read() succeeded: ") + e.what());
    return;
  }
  if (any_failed) broken_promise("read_all() succeeded where a read() failed");
  if (all.format != file.format()) broken_promise("read_all() format differs from format()");
  if (all.tensors.size() != file.entries().size()) broken_promise("read_all() returned a different tensor count");
  for (size_t i = 0; i < all.tensors.size(); ++i) {
    const tl::PthEntry& e = file.entries()[i];
    if (all.tensors[i].name != e.name) broken_promise("read_all() tensor " + std::to_string(i) + " is not '" + e.name + "'");
    check_tensor(e, all.tensors[i].value);
    if (!same_bytes(all.tensors[i].value, read[i]))
      broken_promise("read_all() and read() return different bytes for '" + e.name + "'");
  }
}

void check_accepted(const tl::PthFile& file, const std::string& path, const uint8_t* data, size_t size) {
  if (file.path() != path) broken_promise("path() is not the path opened");
  if (file.format() != expected_format(data, size))
    broken_promise("format '" + file.format() + "' for a file that starts like " + expected_format(data, size));

  std::set<std::string> names;
  for (const tl::PthEntry& e : file.entries()) {
    if (!names.insert(e.name).second) broken_promise("duplicate entry '" + e.name + "'");
    check_entry(file, e);
  }

  std::vector<tl::Tensor> read;
  uint64_t budget = kReadBudgetBytes;
  bool all_read = true, any_failed = false;
  for (const tl::PthEntry& e : file.entries()) {
    const uint64_t numel = checked_numel(e), element = tl::dtype_size(e.dtype);
    if (numel > budget / element) {
      all_read = false;
      read.emplace_back();
      continue;
    }
    budget -= numel * element;
    try {
      read.push_back(file.read(e.name));
      check_tensor(e, read.back());
    } catch (const tl::Error& err) {
      check_error(err, path, "read()");
      read.emplace_back();
      any_failed = true;
    }
  }

  std::string missing = "tl-fuzz: no such tensor";
  while (names.count(missing)) missing += "!";
  try {
    (void)file.read(missing);
    broken_promise("read() of a name that is not there succeeded");
  } catch (const tl::Error& e) {
    check_error(e, path, "read() of a missing name");
  }
  if (file.find(missing) != nullptr) broken_promise("find() found a name that is not there");

  if (all_read) check_read_all(file, path, read, any_failed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memory_file();
  fill(fd, data, size);
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    tl::PthFile file = tl::PthFile::open(path);
    check_accepted(file, path, data, size);
  } catch (const tl::Error& e) {
    check_error(e, path, "open()");
  }
  return 0;
}
