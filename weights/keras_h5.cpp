#include "weights/keras_h5.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/error.h"

#ifdef TL_HAVE_HDF5
#include <sys/stat.h>

#include <chrono>
#include <utility>

#include "weights/hdf5_file.h"
#include "weights/isolated_reader.h"
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
// The Keras file layout, read through weights/hdf5_file.h.

// Keras' load_attributes_from_hdf5_group: `name`, or when it was too big for one object header the chunks
// name0, name1, ... concatenated. `found` (when given) says whether any of them exists.
std::vector<std::string> read_name_list(const std::string& path, hid_t object, const std::string& name,
                                        const std::string& owner, bool* found = nullptr) {
  if (found != nullptr) *found = true;
  if (hdf5::has_attribute(object, name)) return hdf5::read_strings(path, object, name, owner);
  std::vector<std::string> result;
  int chunk = 0;
  for (; hdf5::has_attribute(object, name + std::to_string(chunk)); ++chunk) {
    std::vector<std::string> part = hdf5::read_strings(path, object, name + std::to_string(chunk), owner);
    result.insert(result.end(), part.begin(), part.end());
  }
  if (found != nullptr) *found = chunk > 0;
  return result;
}

// One weight, the dataset <layer group>/<weight name>.
RawWeight read_weight(const std::string& path, uint64_t file_bytes, hid_t group, const std::string& dataset,
                      const std::string& weight_name, const std::string& layer) {
  if (weight_name.empty() || weight_name[0] == '/')
    fail(path, "layer '", layer, "' lists weight name '", weight_name, "', which is not a path inside its group");
  hdf5::Hid dset = hdf5::open_dataset(group, weight_name);
  if (!dset.valid())
    fail(path, "layer '", layer, "' lists weight '", weight_name, "' but dataset '", dataset,
         "' cannot be opened (libhdf5: ", hdf5::error_detail(), ")");
  return {dataset, hdf5::read_float32(path, file_bytes, dset, dataset, str("layer '", layer, "'"))};
}

// The optional scalar string attributes Keras records (keras_version, backend).
void read_info(const std::string& path, hid_t object, const std::string& owner, const char* attribute,
               const char* key, std::map<std::string, std::string>& metadata) {
  if (metadata.count(key) != 0 || !hdf5::has_attribute(object, attribute)) return;
  std::vector<std::string> value = hdf5::read_strings(path, object, attribute, owner);
  if (value.size() == 1) metadata[key] = value[0];
}

ImportedCheckpoint read_locked(const std::string& path) {
  hdf5::File file = hdf5::open_file(path);

  // A weights-only file has layer_names at the root; a full-model file (model.save) under model_weights.
  bool found = false;
  std::string prefix;  // of every dataset path in messages
  hdf5::Hid weights = hdf5::open_group(file.id, "/");
  std::vector<std::string> layer_names = read_name_list(path, weights, "layer_names", "the root group", &found);
  if (!found) {
    if (!hdf5::has_link(file.id, "model_weights"))
      fail(path, "no 'layer_names' attribute at the root and no 'model_weights' group: not a Keras weights file");
    weights = hdf5::open_group(file.id, "model_weights");
    if (!weights.valid()) fail(path, "'model_weights' is not a group (libhdf5: ", hdf5::error_detail(), ")");
    prefix = "model_weights/";
    layer_names = read_name_list(path, weights, "layer_names", "group 'model_weights'", &found);
    if (!found) fail(path, "group 'model_weights' has no 'layer_names' attribute: not a Keras model file");
  }

  // Walk layer_names: every layer with weights must be a VGG16 layer, each at most once.
  std::vector<RawLayer> layers;
  std::vector<size_t> slot_of;
  std::vector<hdf5::Hid> groups;
  for (const std::string& name : layer_names) {
    if (name.empty() || name.find('/') != std::string::npos || name == ".")
      fail(path, "layer name '", name, "' in layer_names is not a group name");
    if (!hdf5::has_link(weights, name))
      fail(path, "layer '", name, "' is listed in layer_names but group '", prefix, name, "' does not exist");
    hdf5::Hid group = hdf5::open_group(weights, name);
    if (!group.valid()) fail(path, "'", prefix, name, "' is not a group (libhdf5: ", hdf5::error_detail(), ")");
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
  const uint64_t file_bytes = file.bytes;
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
  hdf5::Hid root = hdf5::open_group(file.id, "/");
  const std::string owner = prefix.empty() ? "the root group" : "group 'model_weights'";
  for (const auto& [object, name] : {std::pair<hid_t, std::string>(weights, owner), {root, "the root group"}}) {
    read_info(path, object, name, "keras_version", "keras.version", meta);
    read_info(path, object, name, "backend", "keras.backend", meta);
  }
  return result;
}

}  // namespace

// libhdf5 1.10 can crash (H5HG_read on a corrupt global heap) or loop forever on a hostile file, so the whole
// read runs in a child process (weights/isolated_reader.h); the parent never calls libhdf5. The time limit is
// generous for a slow disk: 120 s, plus 1 s per 10 MB (the 528 MB VGG16 with top gets 172 s).
ImportedCheckpoint read_keras_vgg16_h5(const std::string& path) {
  struct stat st {};
  const uint64_t bytes = ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  IsolatedRun run;
  run.path = path;
  run.library = "libhdf5";
  run.crash_hint = "the file is corrupt or not a Keras weights file";
  run.limit = std::chrono::seconds(120 + bytes / 10'000'000);
  return read_checkpoint_isolated(run, [&] {
    hdf5::Session session;  // in the child: the parent never holds libhdf5's lock across the fork
    return read_locked(path);
  });
}

#endif  // TL_HAVE_HDF5

}  // namespace tl
