#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "engine/error.h"
#include "support/test_util.h"
#include "weights/safetensors.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("safetensors") {}
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    return names;
  }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  // Remove first: ext4 flushes a file truncated in place (auto_da_alloc), which costs milliseconds.
  fs::remove(path);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A hand-made file: length prefix, header, then `data_bytes` bytes of data.
std::string write_file(const TempDir& dir, const std::string& header, size_t data_bytes) {
  std::string path = dir.file("hand.safetensors");
  write_bytes(path, le64(header.size()) + header + std::string(data_bytes, '\x5a'));
  return path;
}

// The message open() throws, or "" when the file is accepted.
std::string open_error(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A header with one tensor entry.
std::string one_tensor(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
}

}  // namespace

TEST_CASE("safetensors round trip is bit identical for F32, F64, I64, a scalar and an empty tensor") {
  TempDir dir;
  Rng rng(3);
  Tensor f32 = test::random_tensor(rng, {2, 3}, DType::F32);
  f32.data<float>()[0] = -0.0f;                                      // sign of zero must survive
  f32.data<float>()[1] = std::numeric_limits<float>::quiet_NaN();    // so must a NaN payload
  f32.data<float>()[2] = std::numeric_limits<float>::denorm_min();
  Tensor f64 = test::random_tensor(rng, {3, 1, 2}, DType::F64);
  Tensor i64 = Tensor::empty({4}, DType::I64);
  int64_t ints[] = {std::numeric_limits<int64_t>::min(), -1, 0, std::numeric_limits<int64_t>::max()};
  std::memcpy(i64.data<int64_t>(), ints, sizeof ints);
  Tensor scalar = Tensor::full({}, 2.5, DType::F32);
  Tensor empty = Tensor::zeros({0, 5}, DType::F32);
  std::map<std::string, std::string> metadata = {
      {"unicode", "na\xC3\xAFve \xE2\x98\x83 \xF0\x9F\x98\x80"},
      {"escapes", "quote\" backslash\\ newline\n tab\t control\x01 slash/"},
      {"", "empty key"},
      {"key with \"quotes\"", ""},
  };
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"layer.f32", f32}, {"f64", f64}, {"i64", i64}, {"scalar", scalar}, {"empty", empty}};
  std::string path = dir.file("model.safetensors");
  write_safetensors(path, tensors, metadata);

  SafetensorsFile file = SafetensorsFile::open(path);
  CHECK(file.path() == path);
  CHECK(file.metadata() == metadata);
  REQUIRE(file.entries().size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    CAPTURE(name);
    CHECK(file.entries()[i].name == name);  // header order is the order written
    CHECK(file.entries()[i].dtype == t.dtype());
    CHECK(file.entries()[i].shape == t.shape());
    Tensor back = file.read(name);
    CHECK(back.dtype() == t.dtype());
    CHECK(back.shape() == t.shape());
    CHECK(test::bit_identical(back, t));
  }
  REQUIRE(file.find("scalar") != nullptr);
  CHECK(file.find("scalar")->end - file.find("scalar")->begin == 4);
  CHECK(file.find("missing") == nullptr);

  // The header is padded so the data section starts 8-byte aligned, as the reference writer does.
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  CHECK(len[0] % 8 == 0);
}

TEST_CASE("safetensors reads the reference implementation's own serialization") {
  // safetensors' test_serialization: {"attn.0": F32 [1,2,3] = 0..5}, unpadded 64-byte header.
  TempDir dir;
  std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  REQUIRE(header.size() == 64);
  std::string data;
  for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f}) data.append(reinterpret_cast<const char*>(&v), 4);
  std::string path = dir.file("ref.safetensors");
  write_bytes(path, le64(64) + header + data);
  Tensor t = SafetensorsFile::open(path).read("attn.0");
  CHECK(t.shape() == Shape{1, 2, 3});
  CHECK(t.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("safetensors accepts header order that differs from data order, and empty tensors anywhere") {
  TempDir dir;
  std::string path = write_file(dir, R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                                     R"("e":{"dtype":"F64","shape":[0],"data_offsets":[4,4]},)"
                                     R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                8);
  SafetensorsFile file = SafetensorsFile::open(path);
  REQUIRE(file.entries().size() == 3);
  CHECK(file.entries()[0].name == "b");
  CHECK(file.entries()[2].name == "a");
  CHECK(file.read("e").numel() == 0);
}

TEST_CASE("safetensors: a file shorter than 8 bytes") {
  TempDir dir;
  std::string path = dir.file("short.safetensors");
  write_bytes(path, "abcde");
  CHECK(open_error(path) == path + ": file is 5 bytes, too short for the 8-byte header length");
  write_bytes(path, "");
  CHECK(open_error(path) == path + ": file is 0 bytes, too short for the 8-byte header length");
}

TEST_CASE("safetensors: a missing file, a directory") {
  TempDir dir;
  std::string path = dir.file("absent.safetensors");
  CHECK(open_error(path) == path + ": cannot open: No such file or directory");
  CHECK(open_error(dir.path.string()) == dir.path.string() + ": not a regular file");
}

TEST_CASE("safetensors: header length past the end of the file") {
  TempDir dir;
  std::string path = dir.file("cut.safetensors");
  write_bytes(path, le64(100) + "{\"a\":1}   ");
  CHECK(open_error(path) == path + ": header length 100 runs past the end of the file (18 bytes)");
}

TEST_CASE("safetensors: header length absurdly large") {
  TempDir dir;
  std::string path = dir.file("huge.safetensors");
  write_bytes(path, le64(std::numeric_limits<uint64_t>::max()) + "{}");
  CHECK(open_error(path) == path + ": header length 18446744073709551615 exceeds the limit of 100000000 bytes");
  write_bytes(path, le64(kMaxSafetensorsHeaderBytes + 1) + "{}");
  CHECK(open_error(path) == path + ": header length 100000001 exceeds the limit of 100000000 bytes");
}

TEST_CASE("safetensors: invalid JSON and invalid UTF-8 in the header") {
  TempDir dir;
  std::string path = write_file(dir, R"({"w":)", 0);
  CHECK(open_error(path) ==
        path + ": header is not valid JSON: invalid JSON at byte 5: unexpected end of input, expected a value");
  path = write_file(dir, "{\"w\xFF\":{}}", 0);
  CHECK(open_error(path) == path + ": header is not valid JSON: invalid JSON at byte 3: invalid UTF-8 in string");
  path = write_file(dir, "", 0);
  CHECK(open_error(path) ==
        path + ": header is not valid JSON: invalid JSON at byte 0: unexpected end of input, expected a value");
}

TEST_CASE("safetensors: JSON that is not an object") {
  TempDir dir;
  std::string path = write_file(dir, "[1,2]", 0);
  CHECK(open_error(path) == path + ": header is not a JSON object (it is a JSON array)");
  path = write_file(dir, R"({"w":[1]})", 0);
  CHECK(open_error(path) == path + ": tensor 'w': entry is not a JSON object");
}

TEST_CASE("safetensors: an entry missing a field, or with a field it should not have") {
  TempDir dir;
  std::string path = write_file(dir, R"({"w":{"dtype":"F32","shape":[1]}})", 4);
  CHECK(open_error(path) == path + ": tensor 'w': missing \"data_offsets\"");
  path = write_file(dir, R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4);
  CHECK(open_error(path) == path + ": tensor 'w': missing \"dtype\"");
  path = write_file(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":0}})", 4);
  CHECK(open_error(path) == path + ": tensor 'w': unexpected field \"extra\"");
  path = write_file(dir, R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  CHECK(open_error(path) == path + ": a tensor has an empty name");
}

TEST_CASE("safetensors: malformed shapes and offsets") {
  TempDir dir;
  std::string path = write_file(dir, one_tensor("F32", "[-1]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': shape holds a value that is not a non-negative integer");
  path = write_file(dir, one_tensor("F32", "[1.0]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': shape holds a value that is not a non-negative integer");
  path = write_file(dir, one_tensor("F32", "4", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': \"shape\" is not an array");
  path = write_file(dir, one_tensor("F32", "[1]", "[0]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': \"data_offsets\" is not an array of two integers");
  path = write_file(dir, one_tensor("F32", "[1]", "[0,\"4\"]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': \"data_offsets\" holds a value that is not a non-negative integer");
  path = write_file(dir, one_tensor("F32", "[1]", "[0,18446744073709551620]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': \"data_offsets\" holds a value that is not a non-negative integer");
  std::string rank65 = "[1";
  for (int i = 0; i < 64; ++i) rank65 += ",1";
  path = write_file(dir, one_tensor("F32", rank65 + "]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': shape has 65 dimensions (at most 64)");
}

TEST_CASE("safetensors: shape overflow") {
  TempDir dir;
  // 2^32 * 2^32 elements overflows int64; 2^31 * 2^30 elements fits, but not times 8 bytes.
  std::string path = write_file(dir, one_tensor("F32", "[4294967296,4294967296]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': shape [4294967296,4294967296] overflows");
  path = write_file(dir, one_tensor("F64", "[2147483648,2147483648]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': shape [2147483648,2147483648] overflows");
  // A zero dimension makes any other dimension harmless.
  path = write_file(dir, one_tensor("F32", "[0,9223372036854775807,9223372036854775807]", "[0,0]"), 0);
  CHECK(open_error(path) == "");
}

TEST_CASE("safetensors: offsets out of the data section") {
  TempDir dir;
  std::string path = write_file(dir, one_tensor("F32", "[2]", "[0,8]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': data_offsets [0,8] run past the end of the 4-byte data section");
  path = write_file(dir, one_tensor("F32", "[1]", "[9223372036854775800,9223372036854775804]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': data_offsets [9223372036854775800,9223372036854775804] run past "
                                   "the end of the 4-byte data section");
}

TEST_CASE("safetensors: end before begin") {
  TempDir dir;
  std::string path = write_file(dir, one_tensor("F32", "[1]", "[4,0]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': data_offsets [4,0] end before they begin");
}

TEST_CASE("safetensors: byte count differs from numel times dtype size") {
  TempDir dir;
  std::string path = write_file(dir, one_tensor("F32", "[3]", "[0,8]"), 8);
  CHECK(open_error(path) == path + ": tensor 'w': data_offsets [0,8] hold 8 bytes but F32[3] needs 12");
  path = write_file(dir, one_tensor("F64", "[]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": tensor 'w': data_offsets [0,4] hold 4 bytes but F64[] needs 8");
}

TEST_CASE("safetensors: overlapping tensors") {
  TempDir dir;
  std::string path = write_file(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                12);
  CHECK(open_error(path) == path + ": tensors 'a' [0,8) and 'b' [4,12) overlap");
  // Two names for the same bytes.
  path = write_file(dir, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                    4);
  CHECK(open_error(path) == path + ": tensors 'a' [0,4) and 'b' [0,4) overlap");
}

TEST_CASE("safetensors: a hole in the data") {
  TempDir dir;
  std::string path = write_file(dir, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                12);
  CHECK(open_error(path) == path + ": hole in the data section: bytes [4,8) belong to no tensor");
  path = write_file(dir, one_tensor("F32", "[1]", "[4,8]"), 8);
  CHECK(open_error(path) == path + ": hole in the data section: bytes [0,4) belong to no tensor");
  // Trailing bytes after the last tensor.
  path = write_file(dir, one_tensor("F32", "[1]", "[0,4]"), 7);
  CHECK(open_error(path) == path + ": hole in the data section: bytes [4,7) belong to no tensor");
  path = write_file(dir, "{}", 1);
  CHECK(open_error(path) == path + ": hole in the data section: bytes [0,1) belong to no tensor");
}

TEST_CASE("safetensors: unknown and unsupported dtypes") {
  TempDir dir;
  std::string path = write_file(dir, one_tensor("Q7", "[1]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": unknown dtype \"Q7\" for tensor 'w'");
  path = write_file(dir, one_tensor("BF16", "[2]", "[0,4]"), 4);
  CHECK(open_error(path) == path + ": unsupported dtype BF16 for tensor 'w' (tl reads F32, F64, I64)");
  for (const char* name : {"F16", "I32", "U8", "BOOL", "F8_E4M3", "U64"}) {
    CAPTURE(name);
    path = write_file(dir, one_tensor(name, "[1]", "[0,1]"), 1);
    CHECK(open_error(path) == path + ": unsupported dtype " + name + " for tensor 'w' (tl reads F32, F64, I64)");
  }
  path = write_file(dir, one_tensor("f32", "[1]", "[0,4]"), 4);  // names are case-sensitive
  CHECK(open_error(path) == path + ": unknown dtype \"f32\" for tensor 'w'");
}

TEST_CASE("safetensors: duplicate key") {
  TempDir dir;
  std::string path = write_file(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                8);
  CHECK(open_error(path) == path + ": header is not valid JSON: invalid JSON at byte 54: duplicate key \"w\"");
}

TEST_CASE("safetensors: malformed __metadata__") {
  TempDir dir;
  std::string path = write_file(dir, R"({"__metadata__":{"epochs":3}})", 0);
  CHECK(open_error(path) == path + ": __metadata__ value for \"epochs\" is not a string");
  path = write_file(dir, R"({"__metadata__":"x"})", 0);
  CHECK(open_error(path) == path + ": __metadata__ is not a JSON object");
}

TEST_CASE("safetensors: read() names the file and the tensor; a file changed after open is refused") {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  write_safetensors(path, {{"w", Tensor::full({2}, 1.0)}}, {});
  SafetensorsFile file = SafetensorsFile::open(path);
  CHECK_THROWS_WITH_AS(file.read("v"), (path + ": no tensor named 'v'").c_str(), Error);
  fs::resize_file(path, fs::file_size(path) - 4);
  CHECK_THROWS_WITH_AS(file.read("w"), (path + ": file changed size since it was opened").c_str(), Error);
}

TEST_CASE("safetensors: atomic write leaves no temporary file, and nothing at all on failure") {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  write_safetensors(path, {{"w", Tensor::full({3}, 1.0)}}, {{"k", "v"}});
  CHECK(dir.listing() == std::vector<std::string>{"m.safetensors"});
  // Saving again replaces the file whole.
  write_safetensors(path, {{"v", Tensor::full({1}, 2.0, DType::F64)}}, {});
  CHECK(dir.listing() == std::vector<std::string>{"m.safetensors"});
  SafetensorsFile file = SafetensorsFile::open(path);
  REQUIRE(file.entries().size() == 1);
  CHECK(file.entries()[0].name == "v");
  CHECK(file.metadata().empty());

  std::string missing = dir.file("no_such_dir/m.safetensors");
  std::string tmp = missing + ".tmp-" + std::to_string(::getpid());
  CHECK_THROWS_WITH_AS(write_safetensors(missing, {{"w", Tensor::full({3}, 1.0)}}, {}),
                       (missing + ": cannot create " + tmp + ": No such file or directory").c_str(), Error);
  CHECK_FALSE(fs::exists(dir.path / "no_such_dir"));
  CHECK(dir.listing() == std::vector<std::string>{"m.safetensors"});
}

TEST_CASE("safetensors: the writer refuses what it could not read back, and writes nothing") {
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  Tensor t = Tensor::full({1}, 1.0);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"a", t}, {"a", t}}, {}),
                       (path + ": duplicate tensor name 'a'").c_str(), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"__metadata__", t}}, {}),
                       (path + ": a tensor may not be named __metadata__").c_str(), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"", t}}, {}), (path + ": a tensor has an empty name").c_str(), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"u", Tensor()}}, {}), (path + ": tensor 'u' is undefined").c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"a", t}}, {{"k", "bad \xC0\x80"}}),
                       (path + ": cannot write string as JSON: it is not valid UTF-8").c_str(), Error);
  CHECK(dir.listing().empty());
}

TEST_CASE("safetensors: no crash on any truncation or single-byte corruption of a valid file") {
  // The libFuzzer target will do this at scale; here every prefix and a few byte values at every position.
  TempDir dir;
  std::string good_path = dir.file("good.safetensors");
  write_safetensors(good_path,
                    {{"a", Tensor::full({2, 2}, 1.0)}, {"b", Tensor::full({3}, 2.0, DType::F64)},
                     {"c", Tensor::zeros({0}, DType::I64)}},
                    {{"k", "v"}});
  std::ifstream in(good_path, std::ios::binary);
  std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string path = dir.file("mutant.safetensors");
  int accepted = 0, rejected = 0;
  auto attempt = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    try {
      SafetensorsFile f = SafetensorsFile::open(path);
      for (const auto& e : f.entries()) f.read(e.name);
      ++accepted;
    } catch (const Error& e) {
      CHECK(std::string(e.what()).rfind(path + ": ", 0) == 0);  // every error names the file
      ++rejected;
    }
  };
  for (size_t n = 0; n < good.size(); ++n) attempt(good.substr(0, n));
  for (size_t i = 0; i < good.size(); ++i)
    for (char c : {'\0', '\xff', '"', '9', '}', ' '}) {
      std::string bytes = good;
      bytes[i] = c;
      attempt(bytes);
    }
  CHECK(rejected > static_cast<int>(good.size()));  // every truncation at least
  CHECK(accepted > 0);  // mutations of the data bytes stay valid
}
