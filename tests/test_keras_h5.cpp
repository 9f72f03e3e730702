// Keras VGG16 .h5 -> torchvision layout. Fixtures and the expected tensors come from
// tests/fixtures/make_keras_fixtures.py (h5py writing Keras 2's layout by hand; expected tensors by numpy
// transposes, an independent implementation of the conversion).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "engine/error.h"
#include "support/test_util.h"
#include "weights/isolated_reader.h"
#include "weights/keras_h5.h"
#include "weights/safetensors.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/fixtures/keras/" + name; }

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("keras_h5") {}
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Runs `body` with file descriptor 2 sent to a file; returns what was written there.
template <class F>
std::string capture_stderr(F&& body) {
  TempDir dir;
  const std::string capture = dir.file("stderr.txt");
  std::fflush(stderr);
  const int saved = ::dup(2);
  const int fd = ::open(capture.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::dup2(fd, 2);
  ::close(fd);
  try {
    body();
  } catch (...) {
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    throw;
  }
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  return read_bytes(capture);
}

// Reads `path` expecting failure; returns the message ("" when it was accepted) and what went to stderr meanwhile
// (libhdf5 prints its error stack there unless the reader silences it).
std::string read_error(const std::string& path, std::string* stderr_text = nullptr) {
  std::string message;
  const std::string err = capture_stderr([&] {
    try {
      read_keras_vgg16_h5(path);
    } catch (const Error& e) {
      message = e.what();
    }
  });
  if (stderr_text != nullptr) *stderr_text = err;
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

// ---------------------------------------------------------------------------------------------------------------
// Files that crash libhdf5 1.10.8 itself. Each is vgg16_notop_utf8_chunked.h5 with one byte XORed with 0xFF, found
// by flipping every byte of its metadata (a throwaway loop, not committed) and keeping the inputs that killed the
// reader with SIGSEGV before it ran in a child process:
// (backtraces taken from the unisolated reader under gdb):
//   crash_vlen_heap_index.h5     byte 919 (0x397): the top byte of the global-heap object index of the first
//                                variable-length string of attribute 'layer_names0': H5Aread -> H5T__conv_vlen ->
//                                H5HG_read indexes far past its object table.
//   crash_heap_object_size.h5    byte 2079 (0x81f): the top byte of the size of object 1 ('block2_conv2') of the
//                                global heap collection at 2048: H5Aread -> ... -> H5HG_read memcpy's that size.
// Both crash deterministically: the index and the size are wild. (Other flips, like the top byte of an attribute's
// name length, read past a buffer and crash only with some heap layouts: useless as fixtures.)
TEST_CASE("keras h5: files that crash libhdf5 are a clear error naming the file; the process survives") {
  REQUIRE_HDF5();
  for (const char* name : {"crash_vlen_heap_index.h5", "crash_heap_object_size.h5"}) {
    CAPTURE(name);
    // check_error: the message starts with the path, and libhdf5 printed nothing to our stderr.
    check_error(fixture(name), {"libhdf5 crashed while reading this file (signal 11, Segmentation fault): the file "
                                "is corrupt or not a Keras weights file"});
  }
  // The crashes cost nothing here: the next good file still converts bit for bit.
  ImportedCheckpoint got = read_keras_vgg16_h5(fixture("vgg16_notop_utf8_chunked.h5"));
  check_against_expected(got, false);
  check_metadata(got, false);
}

// Points TMPDIR at a fresh directory for the scope; the old value comes back.
struct ScopedTmpdir {
  TempDir dir;
  std::string old;
  bool had_old;
  ScopedTmpdir() {
    const char* value = std::getenv("TMPDIR");
    had_old = value != nullptr;
    if (had_old) old = value;
    ::setenv("TMPDIR", dir.path.c_str(), 1);
  }
  ~ScopedTmpdir() {
    if (had_old) ::setenv("TMPDIR", old.c_str(), 1);
    else ::unsetenv("TMPDIR");
  }
  bool empty() const { return fs::is_empty(dir.path); }
};

TEST_CASE("keras h5: reading in a child process leaves nothing in the temp directory") {
  REQUIRE_HDF5();
  ScopedTmpdir tmp;
  ImportedCheckpoint got = read_keras_vgg16_h5(fixture("vgg16_model_top.h5"));
  check_against_expected(got, true);
  check_metadata(got, true);
  read_error(fixture("crash_heap_object_size.h5"));
  read_error(fixture("bad_float64.h5"));
  CHECK(tmp.empty());
}

// ---------------------------------------------------------------------------------------------------------------
// The child-process runner itself (weights/isolated_reader.h), with work that fails on purpose.

namespace {

IsolatedRun isolated(std::chrono::seconds limit = std::chrono::seconds(30)) {
  IsolatedRun run;
  run.path = "/data/weights.h5";
  run.library = "libhdf5";
  run.crash_hint = "the file is corrupt";
  run.limit = limit;
  return run;
}

// The message run_isolated throws ("" when it returns); `receive` reads nothing unless given.
std::string isolated_error(const IsolatedRun& run, const std::function<void(IsolatedOutput&)>& work,
                           const std::function<void(IsolatedInput&)>& receive = [](IsolatedInput&) {}) {
  try {
    run_isolated(run, work, receive);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Runs `work` in the child after it wrote its pid to `pid_file`.
std::function<void(IsolatedOutput&)> with_pid(const std::string& pid_file, std::function<void(IsolatedOutput&)> work) {
  return [=](IsolatedOutput& out) {
    write_bytes(pid_file, std::to_string(::getpid()));
    work(out);
  };
}

// The child whose pid is in `pid_file` is gone: killed and reaped, not even a zombie.
void check_child_gone(const std::string& pid_file) {
  const pid_t child = static_cast<pid_t>(std::stol(read_bytes(pid_file)));
  CHECK(child != ::getpid());
  errno = 0;
  CHECK(::kill(child, 0) == -1);
  CHECK(errno == ESRCH);
}

}  // namespace

TEST_CASE("isolated reader: the result streams back whole; errors unchanged; crashes and exits named") {
  // Far more than a pipe holds: the parent reads while the child writes, in odd-sized pieces.
  std::string big(3'000'017, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7919 % 251);
  std::string got(big.size(), 'x');
  CHECK(isolated_error(
            isolated(),
            [&](IsolatedOutput& out) {
              for (size_t at = 0; at < big.size(); at += 70'001)
                out.write(big.data() + at, std::min<size_t>(70'001, big.size() - at));
            },
            [&](IsolatedInput& in) {
              in.read(got.data(), 5);
              in.read(got.data() + 5, got.size() - 5);
            }) == "");
  CHECK(got == big);

  CHECK(isolated_error(isolated(), [](IsolatedOutput& out) {
          out.write("partial", 7);
          throw Error("/data/weights.h5: layer 'fc1' is odd");
        }) == "/data/weights.h5: layer 'fc1' is odd");
  char buffer[8];
  CHECK(isolated_error(  // the work fails while the parent waits for more
            isolated(),
            [](IsolatedOutput& out) {
              out.write("abc", 3);
              throw Error("/data/weights.h5: layer 'fc2' is odd");
            },
            [&](IsolatedInput& in) { in.read(buffer, 8); }) == "/data/weights.h5: layer 'fc2' is odd");
  CHECK(isolated_error(isolated(), [](IsolatedOutput& out) { out.write("abc", 3); },
                       [&](IsolatedInput& in) { in.read(buffer, 8); }) ==
        "/data/weights.h5: internal error: the process reading this file with libhdf5 ended before sending its "
        "whole result");
  // More sent than read (8 MiB, far more than the pipe holds): the rest is dropped; the child never blocks on it.
  CHECK(isolated_error(isolated(std::chrono::seconds(5)), [](IsolatedOutput& out) {
          const std::string chunk(1 << 20, 'z');
          for (int i = 0; i < 8; ++i) out.write(chunk.data(), chunk.size());
        }) == "");
  CHECK(isolated_error(isolated(), [](IsolatedOutput&) { throw std::runtime_error("vector::reserve"); }) ==
        "/data/weights.h5: vector::reserve");
  CHECK(isolated_error(isolated(), [](IsolatedOutput&) { throw std::bad_alloc(); }) ==
        "/data/weights.h5: ran out of memory while reading this file");
  CHECK(isolated_error(isolated(), [](IsolatedOutput&) { ::raise(SIGABRT); }) ==
        "/data/weights.h5: libhdf5 crashed while reading this file (signal 6, Aborted): the file is corrupt");
  CHECK(isolated_error(isolated(), [](IsolatedOutput&) { ::_exit(7); }) ==
        "/data/weights.h5: the process reading this file with libhdf5 exited with status 7 and no message: the "
        "file is corrupt");

  // What the child prints (libhdf5's error stacks, "infinite loop closing library") never reaches our stderr.
  const std::string err = capture_stderr([] {
    run_isolated(
        isolated(),
        [](IsolatedOutput&) {
          std::fputs("HDF5: infinite loop closing library\n", stderr);
          std::fflush(stderr);
          const ssize_t ignored = ::write(2, "raw\n", 4);
          (void)ignored;
        },
        [](IsolatedInput&) {});
  });
  CHECK(err == "");
}

TEST_CASE("isolated reader: an exception from receive kills the child that is still writing") {
  TempDir dir;
  const std::string pid_file = dir.file("child.pid");
  const std::string message = isolated_error(
      isolated(),
      with_pid(pid_file,
               [](IsolatedOutput& out) {
                 const std::string chunk(1 << 20, 'z');
                 for (;;) out.write(chunk.data(), chunk.size());
               }),
      [](IsolatedInput& in) {
        char head[4];
        in.read(head, 4);
        throw Error("/data/weights.h5: malformed");
      });
  CHECK(message == "/data/weights.h5: malformed");
  check_child_gone(pid_file);
}

TEST_CASE("isolated reader: a child past the time limit is killed and named") {
  TempDir dir;
  const std::string pid_file = dir.file("child.pid");
  // Hung before sending anything, and hung after sending all the parent wanted (before exiting).
  for (const bool after_result : {false, true}) {
    CAPTURE(after_result);
    const auto start = std::chrono::steady_clock::now();
    const std::string message = isolated_error(
        isolated(std::chrono::seconds(1)),
        with_pid(pid_file,
                 [&](IsolatedOutput& out) {
                   if (after_result) out.write("ok", 2);
                   for (;;) ::pause();
                 }),
        [](IsolatedInput& in) {
          char ok[2];
          in.read(ok, 2);
        });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(message == "/data/weights.h5: libhdf5 did not finish reading this file in 1 s");
    CHECK(seconds >= 1.0);
    CHECK(seconds < 10.0);  // killed at the limit, not left to run; generous for a loaded machine
    check_child_gone(pid_file);
  }
}

TEST_CASE("isolated reader: a checkpoint crosses the pipe bit for bit, in order") {
  ImportedCheckpoint sent;
  sent.format = "keras-h5";
  sent.metadata["keras.version"] = std::string("2.\xff\0\x01\"", 6);  // any bytes, not only UTF-8
  sent.metadata["empty"] = "";
  Rng rng(11);
  sent.tensors.push_back({"z.weight", test::random_tensor(rng, {5, 3, 3, 2}, DType::F32)});
  sent.tensors.push_back({"a.bias", test::random_tensor(rng, {7}, DType::F64)});
  sent.tensors.push_back({"m.empty", Tensor::empty({0, 4})});
  sent.tensors.push_back({"m.scalar", Tensor::empty({}, DType::I64)});
  sent.tensors.back().value.data<int64_t>()[0] = -1234567890123;
  ImportedCheckpoint got = read_checkpoint_isolated(isolated(), [&] { return sent; });
  CHECK(got.format == sent.format);
  CHECK(got.metadata == sent.metadata);
  REQUIRE(got.tensors.size() == sent.tensors.size());
  for (size_t i = 0; i < sent.tensors.size(); ++i) {
    CAPTURE(sent.tensors[i].name);
    CHECK(got.tensors[i].name == sent.tensors[i].name);
    CHECK(got.tensors[i].value.dtype() == sent.tensors[i].value.dtype());
    REQUIRE(got.tensors[i].value.shape() == sent.tensors[i].value.shape());
    CHECK(test::bit_identical(got.tensors[i].value, sent.tensors[i].value));
  }
  CHECK(got.tensors[0].value.raw() != sent.tensors[0].value.raw());  // a copy, not our own memory
}
