#include "weights/keras_h5.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/error.h"

#ifdef TL_HAVE_HDF5
#include <hdf5.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>
#endif

namespace tl {

#ifndef TL_HAVE_HDF5

bool keras_h5_supported() { return false; }

ImportedCheckpoint read_keras_vgg16_h5(const std::string& path) {
  throw Error(str(path, ": cannot read Keras .h5 weights: tl was built without libhdf5 "
                        "(install libhdf5-dev and reconfigure with -DTL_WITH_HDF5=ON)"));
}

#else

bool keras_h5_supported() { return true; }

namespace {

template <class... Args>
[[noreturn]] void fail(const std::string& path, const Args&... args) {
  throw Error(str(path, ": ", args...));
}

// ---------------------------------------------------------------------------------------------------------------
// VGG16: the Keras layers that hold weights, their torchvision names, and the layout conversions.

constexpr std::array<const char*, 13> kConvLayers = {
    "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2", "block3_conv3",
    "block4_conv1", "block4_conv2", "block4_conv3", "block5_conv1", "block5_conv2", "block5_conv3"};
constexpr std::array<int, 13> kFeatureIndex = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
constexpr std::array<const char*, 3> kDenseLayers = {"fc1", "fc2", "predictions"};
constexpr std::array<int, 3> kClassifierIndex = {0, 3, 6};
constexpr size_t kNoSlot = SIZE_MAX;

// Position of a layer in kConvLayers followed by kDenseLayers, or kNoSlot.
size_t vgg16_slot(const std::string& layer) {
  for (size_t i = 0; i < kConvLayers.size(); ++i)
    if (layer == kConvLayers[i]) return i;
  for (size_t i = 0; i < kDenseLayers.size(); ++i)
    if (layer == kDenseLayers[i]) return kConvLayers.size() + i;
  return kNoSlot;
}

struct RawWeight {
  std::string dataset;  // path inside the file, for messages
  Tensor value;         // F32, as stored
};
struct RawLayer {
  std::string name;
  std::vector<std::string> weight_names;
  std::vector<RawWeight> weights;  // kernel, bias: the weight_names order
};

// HWIO [kh,kw,in,out] -> OIHW [out,in,kh,kw].
Tensor conv_kernel_to_torch(const Tensor& hwio) {
  const int64_t kh = hwio.size(0), kw = hwio.size(1), in = hwio.size(2), out = hwio.size(3);
  Tensor oihw = Tensor::empty({out, in, kh, kw});
  const float* src = hwio.data<float>();
  float* dst = oihw.data<float>();
  for (int64_t y = 0; y < kh; ++y)
    for (int64_t x = 0; x < kw; ++x)
      for (int64_t i = 0; i < in; ++i)
        for (int64_t o = 0; o < out; ++o)
          dst[((o * in + i) * kh + y) * kw + x] = src[((y * kw + x) * in + i) * out + o];
  return oihw;
}

// Dense (in,out) -> (out,in) where the `in` rows are Keras' flatten of an [h,w,c] map, row (y*w + x)*c + ch,
// and become torchvision's flatten of [c,h,w], column (ch*h + y)*w + x. h = w = 1 is a plain transpose.
Tensor dense_kernel_to_torch(const Tensor& kernel, int64_t c, int64_t h, int64_t w) {
  const int64_t in = kernel.size(0), out = kernel.size(1);
  Tensor result = Tensor::empty({out, in});
  const float* src = kernel.data<float>();
  float* dst = result.data<float>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t ch = 0; ch < c; ++ch) {
        const float* row = src + ((y * w + x) * c + ch) * out;
        const int64_t column = (ch * h + y) * w + x;
        for (int64_t o = 0; o < out; ++o) dst[o * in + column] = row[o];
      }
  return result;
}

// Checks one layer's weights (kernel of `kernel_rank`, then a bias of the kernel's last dimension).
void check_kernel_bias(const std::string& path, const RawLayer& layer, size_t kernel_rank, const char* layout) {
  if (layer.weights.size() != 2) {
    std::string names;
    for (const std::string& n : layer.weight_names) names += (names.empty() ? "'" : ", '") + n + "'";
    fail(path, "layer '", layer.name, "' has ", layer.weights.size(), " weights (", names,
         "); expected a kernel and a bias");
  }
  const RawWeight& kernel = layer.weights[0];
  const RawWeight& bias = layer.weights[1];
  if (kernel.value.shape().size() != kernel_rank || kernel.value.numel() == 0)
    fail(path, "dataset '", kernel.dataset, "' (kernel of layer '", layer.name, "') has shape ",
         shape_str(kernel.value.shape()), "; expected a non-empty rank-", kernel_rank, " ", layout, " kernel");
  const Shape want_bias = {kernel.value.shape().back()};
  if (bias.value.shape() != want_bias)
    fail(path, "dataset '", bias.dataset, "' (bias of layer '", layer.name, "') has shape ",
         shape_str(bias.value.shape()), "; expected ", shape_str(want_bias), " for kernel ",
         shape_str(kernel.value.shape()));
}

// `inputs` of `layer` must equal `outputs` of the layer before it.
void check_chain(const std::string& path, const RawLayer& layer, int64_t inputs, const RawLayer* before,
                 int64_t outputs, const char* what) {
  if (before != nullptr && inputs != outputs)
    fail(path, "dataset '", layer.weights[0].dataset, "' (kernel of layer '", layer.name, "') has shape ",
         shape_str(layer.weights[0].value.shape()), ": ", inputs, " ", what, ", but layer '", before->name,
         "' outputs ", outputs);
}

// Validates the complete VGG16 (13 convolutions, optionally the 3 dense layers) and converts it.
std::vector<ImportedTensor> convert_vgg16(const std::string& path, const std::vector<const RawLayer*>& slots,
                                          bool include_top) {
  std::vector<ImportedTensor> out;
  const RawLayer* before = nullptr;
  int64_t channels = 0;
  for (size_t i = 0; i < kConvLayers.size(); ++i) {
    const RawLayer& layer = *slots[i];
    check_kernel_bias(path, layer, 4, "HWIO");
    const Shape& k = layer.weights[0].value.shape();
    if (k[0] != 3 || k[1] != 3)
      fail(path, "dataset '", layer.weights[0].dataset, "' (kernel of layer '", layer.name, "') has shape ",
           shape_str(k), "; VGG16 convolutions are 3x3");
    check_chain(path, layer, k[2], before, channels, "input channels");
    const std::string prefix = str("features.", kFeatureIndex[i], ".");
    out.push_back({prefix + "weight", conv_kernel_to_torch(layer.weights[0].value)});
    out.push_back({prefix + "bias", layer.weights[1].value});
    before = &layer;
    channels = k[3];
  }
  if (!include_top) return out;

  int64_t features = 0;
  for (size_t i = 0; i < kDenseLayers.size(); ++i) {
    const RawLayer& layer = *slots[kConvLayers.size() + i];
    check_kernel_bias(path, layer, 2, "(in, out)");
    const Shape& k = layer.weights[0].value.shape();
    int64_t c = k[0], side = 1;
    if (i == 0) {
      // fc1 reads the Flatten of the last pooled [side, side, channels] map: recover the side.
      c = channels;
      side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(k[0] / channels))));
      if (k[0] % channels != 0 || side * side * channels != k[0])
        fail(path, "dataset '", layer.weights[0].dataset, "' (kernel of layer 'fc1') has shape ", shape_str(k), ": ",
             k[0], " inputs is not H x W x C with H = W for the last convolution's C = ", channels,
             " channels, so the Keras Flatten order cannot be mapped to torchvision's");
    } else {
      check_chain(path, layer, k[0], slots[kConvLayers.size() + i - 1], features, "inputs");
    }
    const std::string prefix = str("classifier.", kClassifierIndex[i], ".");
    out.push_back({prefix + "weight", dense_kernel_to_torch(layer.weights[0].value, c, side, side)});
    out.push_back({prefix + "bias", layer.weights[1].value});
    features = k[1];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// libhdf5 access. The library is not thread-safe in Debian's serial build: one reader at a time.

std::mutex g_hdf5_mutex;

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

// Turns libhdf5's automatic error-stack printing off while the reader runs; restores the caller's handler.
class QuietHdf5 {
 public:
  QuietHdf5() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The innermost libhdf5 error message (where the failure was detected), then clears the stack. With `context`,
// prefixed by the message just below the API call ("unable to read superblock: ..."), when they differ.
std::string hdf5_detail(bool context = false) {
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

bool has_attribute(hid_t object, const std::string& name) { return H5Aexists(object, name.c_str()) > 0; }

// A string attribute as a list: fixed- or variable-length strings, any shape; an empty attribute of any type
// (Keras writes `[]`, an empty float64 array, for a layer without weights) is an empty list.
std::vector<std::string> read_strings(const std::string& path, hid_t object, const std::string& name,
                                      const std::string& owner) {
  Hid attr(H5Aopen(object, name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!attr.valid()) fail(path, "cannot open attribute '", name, "' of ", owner, " (libhdf5: ", hdf5_detail(), ")");
  Hid space(H5Aget_space(attr), H5Sclose);
  Hid type(H5Aget_type(attr), H5Tclose);
  if (!space.valid() || !type.valid()) fail(path, "attribute '", name, "' of ", owner, ": ", hdf5_detail());
  const hssize_t n = H5Sget_simple_extent_type(space) == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(space);
  if (n < 0) fail(path, "attribute '", name, "' of ", owner, ": ", hdf5_detail());
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
      fail(path, "cannot read attribute '", name, "' of ", owner, " (libhdf5: ", hdf5_detail(), ")");
    for (const char* s : strings) result.emplace_back(s != nullptr ? s : "");
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(memory, space, H5P_DEFAULT, strings.data());
#else
    H5Dvlen_reclaim(memory, space, H5P_DEFAULT, strings.data());
#endif
  } else {
    const size_t size = H5Tget_size(type);
    if (size == 0) fail(path, "attribute '", name, "' of ", owner, ": ", hdf5_detail());
    Hid memory(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memory, size);
    H5Tset_strpad(memory, H5T_STR_NULLPAD);  // space-padded strings come back NUL-padded
    H5Tset_cset(memory, H5Tget_cset(type));
    std::vector<char> bytes(static_cast<size_t>(n) * size);
    if (H5Aread(attr, memory, bytes.data()) < 0)
      fail(path, "cannot read attribute '", name, "' of ", owner, " (libhdf5: ", hdf5_detail(), ")");
    for (hssize_t i = 0; i < n; ++i) {
      const char* s = bytes.data() + static_cast<size_t>(i) * size;
      result.emplace_back(s, strnlen(s, size));
    }
  }
  return result;
}

// Keras' load_attributes_from_hdf5_group: `name`, or when it was too big for one object header the chunks
// name0, name1, ... concatenated. `found` (when given) says whether any of them exists.
std::vector<std::string> read_name_list(const std::string& path, hid_t object, const std::string& name,
                                        const std::string& owner, bool* found = nullptr) {
  if (found != nullptr) *found = true;
  if (has_attribute(object, name)) return read_strings(path, object, name, owner);
  std::vector<std::string> result;
  int chunk = 0;
  for (; has_attribute(object, name + std::to_string(chunk)); ++chunk) {
    std::vector<std::string> part = read_strings(path, object, name + std::to_string(chunk), owner);
    result.insert(result.end(), part.begin(), part.end());
  }
  if (found != nullptr) *found = chunk > 0;
  return result;
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

// One weight dataset, checked to be float32 and of a sane size, read as native floats.
RawWeight read_weight(const std::string& path, uint64_t file_bytes, hid_t group, const std::string& dataset,
                      const std::string& weight_name, const std::string& layer) {
  if (weight_name.empty() || weight_name[0] == '/')
    fail(path, "layer '", layer, "' lists weight name '", weight_name, "', which is not a path inside its group");
  Hid dset(H5Dopen2(group, weight_name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dset.valid())
    fail(path, "layer '", layer, "' lists weight '", weight_name, "' but dataset '", dataset,
         "' cannot be opened (libhdf5: ", hdf5_detail(), ")");
  Hid type(H5Dget_type(dset), H5Tclose);
  Hid space(H5Dget_space(dset), H5Sclose);
  if (!type.valid() || !space.valid()) fail(path, "dataset '", dataset, "': ", hdf5_detail());
  if (H5Tequal(type, H5T_IEEE_F32LE) <= 0 && H5Tequal(type, H5T_IEEE_F32BE) <= 0)
    fail(path, "dataset '", dataset, "' (layer '", layer, "') has dtype ", dtype_name(type),
         "; expected float32");
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > 8) fail(path, "dataset '", dataset, "' has an unreadable or absurd rank ", rank);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  Shape shape;
  uint64_t bytes = sizeof(float);
  for (hsize_t d : dims) {
    if (d != 0 && bytes > (uint64_t{1} << 40) / d) fail(path, "dataset '", dataset, "' is absurdly large");
    bytes *= d;
    shape.push_back(static_cast<int64_t>(d));
  }
  // Unfiltered (contiguous) data is stored as is: a header claiming more bytes than the file holds is corrupt.
  Hid plist(H5Dget_create_plist(dset), H5Pclose);
  if (plist.valid() && H5Pget_layout(plist) == H5D_CONTIGUOUS && bytes > file_bytes)
    fail(path, "dataset '", dataset, "' declares shape ", shape_str(shape), " (", bytes,
         " bytes), more than the whole file (", file_bytes, " bytes)");
  RawWeight weight{dataset, Tensor::empty(shape)};
  if (weight.value.numel() > 0 &&
      H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, weight.value.data<float>()) < 0)
    fail(path, "cannot read dataset '", dataset, "' (libhdf5: ", hdf5_detail(), ")");
  return weight;
}

// The optional scalar string attributes Keras records (keras_version, backend).
void read_info(const std::string& path, hid_t object, const std::string& owner, const char* attribute,
               const char* key, std::map<std::string, std::string>& metadata) {
  if (metadata.count(key) != 0 || !has_attribute(object, attribute)) return;
  std::vector<std::string> value = read_strings(path, object, attribute, owner);
  if (value.size() == 1) metadata[key] = value[0];
}

ImportedCheckpoint read_locked(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(path, "cannot open: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
#if H5_VERSION_GE(1, 12, 0)
  const htri_t is_hdf5 = H5Fis_accessible(path.c_str(), H5P_DEFAULT);
#else
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
#endif
  if (is_hdf5 == 0) fail(path, "not an HDF5 file (no HDF5 signature); expected Keras .h5 weights");
  if (is_hdf5 < 0) fail(path, "cannot open as HDF5 (libhdf5: ", hdf5_detail(), ")");
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) {
    const std::string detail = hdf5_detail(true);
    if (detail.find("truncated") != std::string::npos) fail(path, "the HDF5 file is truncated (libhdf5: ", detail, ")");
    fail(path, "libhdf5 cannot open the file (", detail, ")");
  }

  // A weights-only file has layer_names at the root; a full-model file (model.save) under model_weights.
  bool found = false;
  std::string prefix;  // of every dataset path in messages
  Hid weights(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose);
  std::vector<std::string> layer_names = read_name_list(path, weights, "layer_names", "the root group", &found);
  if (!found) {
    if (H5Lexists(file, "model_weights", H5P_DEFAULT) <= 0)
      fail(path, "no 'layer_names' attribute at the root and no 'model_weights' group: not a Keras weights file");
    weights = Hid(H5Gopen2(file, "model_weights", H5P_DEFAULT), H5Gclose);
    if (!weights.valid()) fail(path, "'model_weights' is not a group (libhdf5: ", hdf5_detail(), ")");
    prefix = "model_weights/";
    layer_names = read_name_list(path, weights, "layer_names", "group 'model_weights'", &found);
    if (!found) fail(path, "group 'model_weights' has no 'layer_names' attribute: not a Keras model file");
  }

  // Walk layer_names: every layer with weights must be a VGG16 layer, each at most once.
  std::vector<RawLayer> layers;
  std::vector<size_t> slot_of;
  std::vector<Hid> groups;
  for (const std::string& name : layer_names) {
    if (name.empty() || name.find('/') != std::string::npos || name == ".")
      fail(path, "layer name '", name, "' in layer_names is not a group name");
    if (H5Lexists(weights, name.c_str(), H5P_DEFAULT) <= 0)
      fail(path, "layer '", name, "' is listed in layer_names but group '", prefix, name, "' does not exist");
    Hid group(H5Gopen2(weights, name.c_str(), H5P_DEFAULT), H5Gclose);
    if (!group.valid()) fail(path, "'", prefix, name, "' is not a group (libhdf5: ", hdf5_detail(), ")");
    // Absent or empty for layers without weights (input, pooling, flatten), as Keras' loader reads it.
    std::vector<std::string> weight_names =
        read_name_list(path, group, "weight_names", str("group '", prefix, name, "'"));
    if (weight_names.empty()) continue;
    const size_t slot = vgg16_slot(name);
    if (slot == kNoSlot)
      fail(path, "unexpected layer '", name, "' with ", weight_names.size(),
           " weights: not a Keras VGG16 (its layers are block1_conv1 .. block5_conv3, fc1, fc2, predictions)");
    for (size_t other : slot_of)
      if (other == slot) fail(path, "layer '", name, "' appears twice in layer_names");
    layers.push_back({name, std::move(weight_names), {}});
    slot_of.push_back(slot);
    groups.push_back(std::move(group));
  }

  std::vector<const RawLayer*> slots(kConvLayers.size() + kDenseLayers.size(), nullptr);
  for (size_t i = 0; i < layers.size(); ++i) slots[slot_of[i]] = &layers[i];
  size_t dense_found = 0;
  for (size_t i = kConvLayers.size(); i < slots.size(); ++i) dense_found += slots[i] != nullptr;
  const bool include_top = dense_found > 0;
  std::string missing;
  for (size_t i = 0; i < slots.size(); ++i) {
    const bool needed = i < kConvLayers.size() || include_top;
    const char* name = i < kConvLayers.size() ? kConvLayers[i] : kDenseLayers[i - kConvLayers.size()];
    if (needed && slots[i] == nullptr) missing += (missing.empty() ? "" : ", ") + std::string(name);
  }
  if (!missing.empty())
    fail(path, "missing layer(s) ", missing, ": a Keras VGG16 has block1_conv1 .. block5_conv3",
         include_top ? " and, with its top, fc1, fc2 and predictions" : "");

  // Every layer is known and present: now read the data.
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  for (size_t i = 0; i < layers.size(); ++i)
    for (const std::string& weight_name : layers[i].weight_names)
      layers[i].weights.push_back(read_weight(path, file_bytes, groups[i], prefix + layers[i].name + "/" + weight_name,
                                              weight_name, layers[i].name));

  ImportedCheckpoint result;
  result.format = "keras-h5";
  result.tensors = convert_vgg16(path, slots, include_top);
  auto& meta = result.metadata;
  meta["architecture"] = "vgg16";
  meta["include_top"] = include_top ? "true" : "false";
  if (include_top) meta["num_classes"] = std::to_string(slots.back()->weights[1].value.numel());
  meta["preprocessing.color"] = "BGR";
  meta["preprocessing.scale"] = "255";
  meta["preprocessing.mean"] = "103.939,116.779,123.68";
  meta["preprocessing.std"] = "1,1,1";
  meta["preprocessing.resize"] = "256";
  meta["preprocessing.crop"] = "224";
  Hid root(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose);
  const std::string owner = prefix.empty() ? "the root group" : "group 'model_weights'";
  for (const auto& [object, name] : {std::pair<hid_t, std::string>(weights, owner), {root, "the root group"}}) {
    read_info(path, object, name, "keras_version", "keras.version", meta);
    read_info(path, object, name, "backend", "keras.backend", meta);
  }
  return result;
}

}  // namespace

ImportedCheckpoint read_keras_vgg16_h5(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_hdf5_mutex);
  QuietHdf5 quiet;
  return read_locked(path);
}

#endif  // TL_HAVE_HDF5

}  // namespace tl
