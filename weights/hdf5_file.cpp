#include "weights/hdf5_file.h"

#ifdef TL_HAVE_HDF5
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "engine/error.h"

namespace tl::hdf5 {
namespace {

std::mutex g_hdf5_mutex;

template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(str(path, ": ", args...));
}

std::string dtype_name(hid_t type) {
  const size_t bits = H5Tget_size(type) * 8;
  switch (H5Tget_class(type)) {
    case H5T_FLOAT: return str("float", bits);
    case H5T_INTEGER: return str(H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    default: return "a non-numeric HDF5 type";
  }
}

}  // namespace

Session::Session() {
  g_hdf5_mutex.lock();
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

Session::~Session() {
  H5Eset_auto2(H5E_DEFAULT, func_, data_);
  g_hdf5_mutex.unlock();
}

std::string error_detail(bool context) {
  std::vector<std::string> stack;  // API call first, innermost last
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        static_cast<std::vector<std::string>*>(out)->push_back(e->desc != nullptr ? e->desc : "");
        return 0;
      },
      &stack);
  H5Eclear2(H5E_DEFAULT);
  if (stack.empty() || stack.back().empty()) return "no detail";
  if (context && stack.size() > 2) return stack[1] + ": " + stack.back();
  return stack.back();
}

File open_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, "cannot open: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_hdf5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
#endif
  if (is_hdf5 == 0) fail(path, "not an HDF5 file (no HDF5 signature); expected Keras .h5 weights");
  if (is_hdf5 < 0) fail(path, "cannot open as HDF5 (libhdf5: ", error_detail(), ")");
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) {
    const std::string detail = error_detail(true);
    if (detail.find("truncated") != std::string::npos) fail(path, "the HDF5 file is truncated (libhdf5: ", detail, ")");
    fail(path, "libhdf5 cannot open the file (", detail, ")");
  }
  return {std::move(file), static_cast<uint64_t>(st.st_size)};
}

bool has_link(hid_t group, const std::string& name) { return H5Lexists(group, name.c_str(), H5P_DEFAULT) > 0; }

bool has_attribute(hid_t object, const std::string& name) { return H5Aexists(object, name.c_str()) > 0; }

Hid open_group(hid_t parent, const std::string& name) {
  return Hid(H5Gopen2(parent, name.c_str(), H5P_DEFAULT), H5Gclose);
}

Hid open_dataset(hid_t group, const std::string& name) {
  return Hid(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose);
}

std::vector<std::string> read_strings(const std::string& path, hid_t object, const std::string& name,
                                      const std::string& owner) {
  Hid attr(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!attr.valid()) fail(path, "cannot open attribute '", name, "' of ", owner, " (libhdf5: ", error_detail(), ")");
  Hid space(H5Aget_space(attr), H5Sclose);
  Hid type(H5Aget_type(attr), H5Tclose);
  if (!space.valid() || !type.valid()) fail(path, "attribute '", name, "' of ", owner, ": ", error_detail());
  const hssize_t n = H5Sget_simple_extent_type(space) == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(space);
  if (n < 0) fail(path, "attribute '", name, "' of ", owner, ": ", error_detail());
  if (n == 0) return {};
  if (H5Tget_class(type) != H5T_STRING)
    fail(path, "attribute '", name, "' of ", owner, " holds ", n, " non-string values; expected layer or weight names");
  std::vector<std::string> result;
  if (H5Tis_variable_str(type) > 0) {
    Hid memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory, H5T_VARIABLE);
    H5Tset_cset(memory, H5Tget_cset(type));
    std::vector<char*> strings(static_cast<size_t>(n), nullptr);
    if (H5Aread(attr, memory, strings.data()) < 0)
      fail(path, "cannot read attribute '", name, "' of ", owner, " (libhdf5: ", error_detail(), ")");
    for (const char* s : strings) result.emplace_back(s != nullptr ? s : "");
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(memory, space, H5P_DEFAULT, strings.data());
#else
    H5Dvlen_reclaim(memory, space, H5P_DEFAULT, strings.data());
#endif
  } else {
    const size_t size = H5Tget_size(type);
    if (size == 0) fail(path, "attribute '", name, "' of ", owner, ": ", error_detail());
    Hid memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory, size);
    H5Tset_strpad(memory, H5T_STR_NULLPAD);  // space-padded strings come back NUL-padded
    H5Tset_cset(memory, H5Tget_cset(type));
    std::vector<char> bytes(static_cast<size_t>(n) * size);
    if (H5Aread(attr, memory, bytes.data()) < 0)
      fail(path, "cannot read attribute '", name, "' of ", owner, " (libhdf5: ", error_detail(), ")");
    for (hssize_t i = 0; i < n; ++i) {
      const char* s = bytes.data() + static_cast<size_t>(i) * size;
      result.emplace_back(s, strnlen(s, size));
    }
  }
  return result;
}

Tensor read_float32(const std::string& path, uint64_t file_bytes, hid_t dataset, const std::string& name,
                    const std::string& owner) {
  Hid type(H5Dget_type(dataset), H5Tclose);
  Hid space(H5Dget_space(dataset), H5Sclose);
  if (!type.valid() || !space.valid()) fail(path, "dataset '", name, "': ", error_detail());
  if (H5Tequal(type, H5T_IEEE_F32LE) <= 0 && H5Tequal(type, H5T_IEEE_F32BE) <= 0)
    fail(path, "dataset '", name, "' (", owner, ") has dtype ", dtype_name(type), "; expected float32");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > 8) fail(path, "dataset '", name, "' has an unreadable or absurd rank ", rank);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  Shape shape;
  uint64_t bytes = sizeof(float);
  for (hsize_t d : dims) {
    if (d != 0 && bytes > (uint64_t{1} << 40) / d) fail(path, "dataset '", name, "' is absurdly large");
    bytes *= d;
    shape.push_back(static_cast<int64_t>(d));
  }
  // Unfiltered (contiguous) data is stored as is: a header claiming more bytes than the file holds is corrupt.
  Hid plist(H5Dget_create_plist(dataset), H5Pclose);
  if (plist.valid() && H5Pget_layout(plist) == H5D_CONTIGUOUS && bytes > file_bytes)
    fail(path, "dataset '", name, "' declares shape ", shape_str(shape), " (", bytes,
         " bytes), more than the whole file (", file_bytes, " bytes)");
  Tensor value = Tensor::empty(shape);
  if (value.numel() > 0 && H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, value.data<float>()) < 0)
    fail(path, "cannot read dataset '", name, "' (libhdf5: ", error_detail(), ")");
  return value;
}

}  // namespace tl::hdf5

#endif  // TL_HAVE_HDF5
