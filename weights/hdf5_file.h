#pragma once
// Internal to the Keras reader (weights/keras_h5.cpp): the libhdf5 calls it makes, with tl::Error messages
// "<path>: ..." that carry libhdf5's own reason. Called only in the reader's child process: a corrupt file can
// crash libhdf5 1.10 (a segfault in H5HG_read) or make it loop. Exists only when tl is built with libhdf5
// (TL_HAVE_HDF5).
#ifdef TL_HAVE_HDF5
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace tl::hdf5 {

// An HDF5 identifier closed at scope exit.
class Hid {
 public:
  Hid(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Hid(Hid&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  Hid& operator=(Hid&& other) noexcept {
    std::swap(id_, other.id_);
    std::swap(close_, other.close_);
    return *this;
  }
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  ~Hid() {
    if (id_ >= 0) close_(id_);
  }
  bool valid() const { return id_ >= 0; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// Held while a file is read. libhdf5 is not thread-safe in Debian's serial build: one reader at a time. Its
// automatic error-stack printing is off meanwhile (the errors become messages); the caller's handler comes back.
// read_keras_vgg16_h5 takes it only inside its forked child (weights/isolated_reader.h), so no thread of the
// parent ever holds the lock, or is inside libhdf5, when another thread forks.
class Session {
 public:
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The innermost libhdf5 error message (where the failure was detected), then clears the stack. With `context`,
// prefixed by the message just below the API call ("unable to read superblock: ..."), when they differ.
std::string error_detail(bool context = false);

struct File {
  Hid id;
  uint64_t bytes;  // the file's size
};
// Opens a regular HDF5 file read-only; the messages say when it is not one, or is truncated.
File open_file(const std::string& path);

bool has_link(hid_t group, const std::string& name);
bool has_attribute(hid_t object, const std::string& name);
Hid open_group(hid_t parent, const std::string& name);  // invalid when libhdf5 cannot open it
Hid open_dataset(hid_t group, const std::string& name);  // invalid when libhdf5 cannot open it

// A string attribute as a list: fixed- or variable-length strings, any shape; an empty attribute of any type
// (Keras writes `[]`, an empty float64 array, for a layer without weights) is an empty list. `owner` names the
// object in messages ("the root group", "group 'fc1'").
std::vector<std::string> read_strings(const std::string& path, hid_t object, const std::string& name,
                                      const std::string& owner);

// A float32 dataset of a sane size (checked against the file's `file_bytes` when stored unfiltered), read as
// native floats. `name` is its path inside the file and `owner` what it belongs to ("layer 'fc1'"), for messages.
Tensor read_float32(const std::string& path, uint64_t file_bytes, hid_t dataset, const std::string& name,
                    const std::string& owner);

}  // namespace tl::hdf5

#endif  // TL_HAVE_HDF5
