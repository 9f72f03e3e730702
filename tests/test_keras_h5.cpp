// Keras VGG16 .h5 -> torchvision layout. Fixtures and the expected tensors come from
// tests/fixtures/make_keras_fixtures.py (h5py writing Keras 2's layout by hand; expected tensors by numpy
// transposes, an independent implementation of the conversion).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "engine/error.h"
#include "support/test_util.h"
#include "weights/keras_h5.h"
#include "weights/safetensors.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/fixtures/keras/" + name; }

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("tl_test_keras_h5_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Reads `path` expecting failure; returns the message ("" when it was accepted) and what went to stderr meanwhile
// (libhdf5 prints its error stack there unless the reader silences it).
std::string read_error(const std::string& path, std::string* stderr_text = nullptr) {
  TempDir dir;
  const std::string capture = dir.file("stderr.txt");
  std::fflush(stderr);
  const int saved = ::dup(2);
  const int fd = ::open(capture.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::dup2(fd, 2);
  ::close(fd);
  std::string message;
  try {
    read_keras_vgg16_h5(path);
  } catch (const Error& e) {
    message = e.what();
  }
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  if (stderr_text != nullptr) *stderr_text = read_bytes(capture);
  return message;
}

// Every converted tensor equals the numpy-made one bit for bit, names and order included.
void check_against_expected(const ImportedCheckpoint& got, bool include_top) {
  SafetensorsFile expected = SafetensorsFile::open(fixture("vgg16_expected.safetensors"));
  REQUIRE(expected.entries().size() == 32);
  const size_t count = include_top ? 32 : 26;
  REQUIRE(got.tensors.size() == count);
  for (size_t i = 0; i < count; ++i) {
    const SafetensorsEntry& want = expected.entries()[i];
    const ImportedTensor& have = got.tensors[i];
    CAPTURE(want.name);
    CHECK(have.name == want.name);
    CHECK(have.value.dtype() == DType::F32);
    REQUIRE(have.value.shape() == want.shape);
    CHECK(test::bit_identical(have.value, expected.read(want.name)));
  }
}

void check_metadata(const ImportedCheckpoint& got, bool include_top) {
  CHECK(got.format == "keras-h5");
  auto meta = got.metadata;
  CHECK(meta["architecture"] == "vgg16");
  CHECK(meta["include_top"] == (include_top ? "true" : "false"));
  CHECK(meta["preprocessing.color"] == "BGR");
  CHECK(meta["preprocessing.scale"] == "255");
  CHECK(meta["preprocessing.mean"] == "103.939,116.779,123.68");
  CHECK(meta["preprocessing.std"] == "1,1,1");
  CHECK(meta["preprocessing.resize"] == "256");
  CHECK(meta["preprocessing.crop"] == "224");
  CHECK(meta["keras.version"] == "2.2.4");
  CHECK(meta["keras.backend"] == "tensorflow");
  if (include_top) CHECK(meta["num_classes"] == "6");
}

// Asserts the error starts with the file's path and contains every piece; libhdf5 stays silent.
void check_error(const std::string& path, std::initializer_list<std::string> pieces) {
  std::string err;
  const std::string message = read_error(path, &err);
  CAPTURE(message);
  CHECK(message.rfind(path + ": ", 0) == 0);
  for (const std::string& piece : pieces) CHECK(message.find(piece) != std::string::npos);
  CHECK(err == "");
}

#define REQUIRE_HDF5()                                           \
  if (!keras_h5_supported()) {                                   \
    MESSAGE("tl was built without libhdf5: .h5 tests skipped"); \
    return;                                                      \
  }

}  // namespace

TEST_CASE("keras h5: without libhdf5 the reader says so, naming the file") {
  if (keras_h5_supported()) return;  // the other tests cover the real reader
  const std::string message = read_error(fixture("vgg16_notop_keras2.h5"));
  CHECK(message.find("vgg16_notop_keras2.h5: ") != std::string::npos);
  CHECK(message.find("built without libhdf5") != std::string::npos);
}

TEST_CASE("keras h5: Keras 2 weights-only VGG16 without top converts bit for bit") {
  REQUIRE_HDF5();
  ImportedCheckpoint got = read_keras_vgg16_h5(fixture("vgg16_notop_keras2.h5"));
  check_against_expected(got, false);
  check_metadata(got, false);
  CHECK(got.metadata.count("num_classes") == 0);
  CHECK(got.tensors[0].value.shape() == Shape{4, 3, 3, 3});  // HWIO [3,3,3,4] -> OIHW
}

TEST_CASE("keras h5: 2016-style names (_W_1:0) with fixed-length strings and the top convert bit for bit") {
  REQUIRE_HDF5();
  ImportedCheckpoint got = read_keras_vgg16_h5(fixture("vgg16_top_keras1.h5"));
  check_against_expected(got, true);  // includes fc1's HWC -> CHW row reordering
  check_metadata(got, true);
  CHECK(got.tensors[26].name == "classifier.0.weight");
  CHECK(got.tensors[26].value.shape() == Shape{10, 7 * 7 * 8});
}

TEST_CASE("keras h5: a full-model file (model_weights group) converts bit for bit") {
  REQUIRE_HDF5();
  ImportedCheckpoint got = read_keras_vgg16_h5(fixture("vgg16_model_top.h5"));
  check_against_expected(got, true);
  check_metadata(got, true);
}

TEST_CASE("keras h5: variable-length UTF-8 names and chunked layer_names convert bit for bit") {
  REQUIRE_HDF5();
  ImportedCheckpoint got = read_keras_vgg16_h5(fixture("vgg16_notop_utf8_chunked.h5"));
  check_against_expected(got, false);
  check_metadata(got, false);
}

TEST_CASE("keras h5: wrong dtype, missing or unknown layers and inconsistent shapes are named") {
  REQUIRE_HDF5();
  check_error(fixture("bad_float64.h5"),
              {"dataset 'block3_conv2/block3_conv2/kernel:0'", "layer 'block3_conv2'", "dtype float64",
               "expected float32"});
  check_error(fixture("bad_missing_layer.h5"), {"missing layer(s) block4_conv2:"});
  check_error(fixture("bad_missing_top_layer.h5"), {"missing layer(s) fc2:", "with its top"});
  check_error(fixture("bad_shape_mismatch.h5"),
              {"dataset 'block2_conv1/block2_conv1/kernel:0'", "shape [3,3,6,5]",
               "6 input channels, but layer 'block1_conv2' outputs 4"});
  check_error(fixture("bad_unknown_layer.h5"), {"unexpected layer 'dense_extra' with 2 weights"});
  check_error(fixture("bad_fc1_factor.h5"),
              {"dataset 'fc1/fc1_W_1:0'", "shape [400,10]", "400 inputs is not H x W x C", "C = 8"});
  check_error(fixture("bad_missing_dataset.h5"),
              {"layer 'block5_conv3' lists weight 'block5_conv3/bias:0'",
               "dataset 'block5_conv3/block5_conv3/bias:0' cannot be opened"});
  check_error(fixture("not_keras.h5"), {"no 'layer_names' attribute", "not a Keras weights file"});
}

TEST_CASE("keras h5: truncated, non-HDF5, empty and absent files give our message, not libhdf5's stack") {
  REQUIRE_HDF5();
  TempDir dir;
  const std::string whole = read_bytes(fixture("vgg16_notop_keras2.h5"));
  REQUIRE(whole.size() > 10000);

  const std::string truncated = dir.file("truncated.h5");
  write_bytes(truncated, whole.substr(0, whole.size() / 2));
  check_error(truncated, {"the HDF5 file is truncated", "eof"});

  const std::string text = dir.file("weights.h5");
  write_bytes(text, "this is not HDF5 but a text file long enough to hold a superblock if it were one\n");
  check_error(text, {"not an HDF5 file"});

  const std::string empty = dir.file("empty.h5");
  write_bytes(empty, "");
  check_error(empty, {"not an HDF5 file"});

  // Cut inside the superblock: libhdf5 finds the signature but cannot read the rest.
  const std::string header_only = dir.file("header_only.h5");
  write_bytes(header_only, whole.substr(0, 40));
  std::string err;
  const std::string message = read_error(header_only, &err);
  CAPTURE(message);
  CHECK(message.rfind(header_only + ": ", 0) == 0);
  CHECK(err == "");

  check_error(dir.file("absent.h5"), {"cannot open: No such file or directory"});
  check_error(dir.path.string(), {"not a regular file"});
}
