#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/rng.h"
#include "loaders/npy.h"
#include "support/test_util.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("npy") {}
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_error(const std::string& path) {
  try {
    read_npy(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A hand-made v1.0 file: preamble, `dict` padded to 64 bytes with '\n', then `data`.
std::string hand_npy(const std::string& dict, const std::string& data) {
  std::string d = dict;
  d.append((64 - (10 + d.size() + 1) % 64) % 64, ' ');
  d += '\n';
  std::string s("\x93NUMPY\x01\x00", 8);
  s += static_cast<char>(d.size() & 0xff);
  s += static_cast<char>(d.size() >> 8);
  return s + d + data;
}

bool have_numpy() {
  return fs::exists("/usr/bin/python3") && std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

// Runs a command and returns its standard output.
std::string run_capture(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

std::string hex(const void* data, size_t size) {
  std::string s;
  char b[3];
  for (size_t i = 0; i < size; ++i) {
    std::snprintf(b, sizeof b, "%02x", static_cast<const unsigned char*>(data)[i]);
    s += b;
  }
  return s;
}

}  // namespace

TEST_CASE("npy header is the NEP's v1.0 dict, padded so the data starts at a multiple of 64 bytes") {
  std::string h = npy_header({2, 3});
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  REQUIRE(h.size() == 128);  // 10 + 60 + 1 bytes round up to the next multiple of 64
  CHECK(h.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(static_cast<unsigned char>(h[8]) == 118);  // 128 - 10 bytes of preamble, little-endian
  CHECK(h[9] == 0);
  CHECK(h.substr(10, dict.size()) == dict);
  CHECK(h.substr(10 + dict.size()) == std::string(128 - 10 - dict.size() - 1, ' ') + "\n");
  CHECK(npy_header({5}).find("'shape': (5,), }") != std::string::npos);  // a 1-tuple keeps its comma
  CHECK(npy_header({}).find("'shape': (), }") != std::string::npos);
  for (const Shape& s : {Shape{}, Shape{7}, Shape{123456789, 4096}, Shape{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}})
    CHECK(npy_header(s).size() % 64 == 0);
}

TEST_CASE("npy round trip through our reader is bit identical for several shapes") {
  TempDir dir;
  Rng rng(11);
  for (const Shape& shape : {Shape{3, 4}, Shape{5}, Shape{}, Shape{0, 4}, Shape{2, 1, 3}}) {
    CAPTURE(shape_str(shape));
    Tensor t = test::random_tensor(rng, shape, DType::F32);
    if (t.numel() > 1) {
      t.data<float>()[0] = -0.0f;
      t.data<float>()[1] = std::numeric_limits<float>::denorm_min();
    }
    std::string path = dir.file("a.npy");
    write_npy(path, t);
    CHECK(fs::file_size(path) == npy_header(shape).size() + t.nbytes());
    Tensor back = read_npy(path);
    CHECK(back.shape() == shape);
    CHECK(back.dtype() == DType::F32);
    CHECK(test::bit_identical(back, t));
  }
  CHECK(fs::directory_iterator(dir.path) != fs::directory_iterator());  // only a.npy: no temporary left
  int files = 0;
  for (auto& e : fs::directory_iterator(dir.path)) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("npy writer converts F64 to F32 and rejects what it cannot write") {
  TempDir dir;
  Tensor d = Tensor::from_vector({3}, std::vector<double>{0.1, -2.5, 1e30});
  write_npy(dir.file("d.npy"), d);
  Tensor back = read_npy(dir.file("d.npy"));
  CHECK(back.data<float>()[0] == 0.1f);
  CHECK(back.data<float>()[1] == -2.5f);
  CHECK(back.data<float>()[2] == 1e30f);
  CHECK_THROWS_WITH_AS(write_npy(dir.file("i.npy"), Tensor::zeros({2}, DType::I64)), doctest::Contains("not floating point"), Error);
  CHECK_THROWS_WITH_AS(write_npy(dir.file("no/such/dir/x.npy"), d), doctest::Contains("cannot create"), Error);
}

TEST_CASE("numpy reads what write_npy wrote, and read_npy reads what numpy wrote") {
  if (!have_numpy()) {
    MESSAGE("skipped: /usr/bin/python3 with numpy is not available");
    return;
  }
  TempDir dir;
  Rng rng(5);
  Tensor t = test::random_tensor(rng, {3, 5}, DType::F32, -100, 100);
  std::string ours = dir.file("ours.npy");
  write_npy(ours, t);
  std::string out = run_capture("/usr/bin/python3 -c \"import numpy as np; a = np.load('" + ours +
                                "'); print(a.dtype.str, a.shape, a.flags.c_contiguous, a.tobytes().hex())\"");
  CHECK(out == "<f4 (3, 5) True " + hex(t.raw(), t.nbytes()) + "\n");

  std::string theirs = dir.file("theirs.npy");
  run_capture("/usr/bin/python3 -c \"import numpy as np; np.save('" + theirs +
              "', np.arange(24, dtype='<f4').reshape(2, 3, 4) / 7)\"");
  Tensor a = read_npy(theirs);
  REQUIRE(a.shape() == Shape{2, 3, 4});
  for (int i = 0; i < 24; ++i) CHECK(a.data<float>()[i] == static_cast<float>(i) / 7.0f);
}

TEST_CASE("npy reader rejects malformed and unsupported files by path") {
  TempDir dir;
  std::string p = dir.file("bad.npy");
  std::string four(16, '\0');  // data for 4 floats
  auto err = [&](const std::string& bytes) {
    write_bytes(p, bytes);
    return read_error(p);
  };
  // A well-formed file first, so each rejection below is caused by its one change.
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", four)) == "");
  CHECK(err(hand_npy("{'shape': (4,), 'fortran_order': False, 'descr': '<f4'}", four)) == "");  // any key order
  CHECK(err("") == p + ": too short for a .npy file (0 bytes)");
  CHECK(err(std::string("\x93NUMPX\x01\x00\x00\x00", 10)) == p + ": not a .npy file (bad magic)");
  std::string v3 = hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", four);
  v3[6] = 3;
  CHECK(err(v3).find("unsupported .npy version 3.0") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", four)).find("dtype '<f8' is not supported") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", four)).find("dtype '>f4'") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four)).find("Fortran-order") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", four)).find("needs more data") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", four)).find("needs 12 data bytes but the file holds 16") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }", four)).find("needs more data") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", four)).find("dimension overflows") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'shape': (4,), }", four)).find("exactly the keys") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'descr': '<f4', 'shape': (4,), }", four)).find("duplicate key") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", four)).find("unexpected key 'x'") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), } x", four)).find("trailing characters") != std::string::npos);
  CHECK(err(hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,", four)).find("malformed .npy header") != std::string::npos);
  std::string no_newline = hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", four);
  no_newline[no_newline.rfind('\n')] = ' ';
  CHECK(err(no_newline).find("no terminating newline") != std::string::npos);
  std::string long_header = hand_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", four);
  long_header[8] = static_cast<char>(0xff);  // header length past the end of the file
  CHECK(err(long_header).find("runs past the end") != std::string::npos);
  CHECK_THROWS_WITH_AS(read_npy(dir.file("missing.npy")), doctest::Contains("missing.npy"), Error);
}
