// PyTorch .pth reading (weights/pth.h) in the zip, legacy and tar layouts, against references written by
// tests/fixtures/make_pth_fixtures.py with torch 1.13, and on the real checkpoints in ../shared/data/weights.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "support/test_util.h"
#include "weights/pth.h"
#include "weights/safetensors.h"
#include "weights/tar_reader.h"
#include "weights/zip_reader.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

using tl::test::error_of;

namespace {

std::string fixture(const std::string& name) { return test::source_dir() + "/tests/fixtures/pth/" + name; }

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("pth") {}
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::string open_error(const std::string& path) { return error_of([&] { PthFile::open(path); }); }
std::string read_error(const PthFile& f, const std::string& name) { return error_of([&] { f.read(name); }); }

void put_le32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>(v >> (8 * i));
}

// Every tensor, by read() and by read_all(), bit-identical to the reference safetensors file, in the same order.
void check_against_reference(const std::string& pth, const std::string& ref_path, const std::string& format) {
  CAPTURE(pth);
  PthFile f = PthFile::open(pth);
  SafetensorsFile ref = SafetensorsFile::open(ref_path);
  CHECK(f.format() == format);
  CHECK(f.path() == pth);
  REQUIRE(f.entries().size() == ref.entries().size());
  ImportedCheckpoint all = f.read_all();
  CHECK(all.format == format);
  REQUIRE(all.tensors.size() == ref.entries().size());
  for (size_t i = 0; i < ref.entries().size(); ++i) {
    const SafetensorsEntry& r = ref.entries()[i];
    const PthEntry& e = f.entries()[i];
    CAPTURE(r.name);
    CHECK(e.name == r.name);
    CHECK(e.shape == r.shape);
    CHECK(e.dtype == r.dtype);
    Tensor expected = ref.read(r.name);
    CHECK(test::bit_identical(f.read(r.name), expected));
    CHECK(all.tensors[i].name == r.name);
    CHECK(test::bit_identical(all.tensors[i].value, expected));
  }
}

// torchvision resnet18()'s state_dict: name -> shape, from ../shared/data/weights/resnet18_state_dict_layout.tsv.
std::vector<std::pair<std::string, Shape>> torchvision_layout(const std::string& data) {
  std::ifstream in(data + "/weights/resnet18_state_dict_layout.tsv");
  REQUIRE(in.good());
  std::vector<std::pair<std::string, Shape>> layout;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::string name = line.substr(0, line.find('\t'));
    std::string dims = line.substr(line.find('[') + 1, line.find(']') - line.find('[') - 1);
    Shape shape;
    std::stringstream s(dims);
    for (std::string d; std::getline(s, d, ',');) shape.push_back(std::stoll(d));
    layout.emplace_back(name, shape);
  }
  return layout;
}

// The 102 tensors of the 2017/2020 checkpoints: the layout without num_batches_tracked, by name.
std::map<std::string, Shape> layout_without_counters(const std::string& data) {
  std::map<std::string, Shape> out;
  for (const auto& [name, shape] : torchvision_layout(data))
    if (name.find("num_batches_tracked") == std::string::npos) out[name] = shape;
  return out;
}

std::map<std::string, Shape> shapes_of(const PthFile& f) {
  std::map<std::string, Shape> out;
  for (const PthEntry& e : f.entries()) out[e.name] = e.shape;
  return out;
}

const PthEntry& entry(const PthFile& f, const std::string& name) {
  const PthEntry* e = f.find(name);
  REQUIRE(e != nullptr);
  return *e;
}

}  // namespace

TEST_CASE("pth: a reduced ResNet in the zip, zip64, legacy and tar layouts reads bit-identical to torch's values") {
  const std::string ref = fixture("reduced_ref.safetensors");
  check_against_reference(fixture("reduced_zip.pth"), ref, "pth-zip");
  check_against_reference(fixture("reduced_zip64.pth"), ref, "pth-zip");
  check_against_reference(fixture("reduced_legacy.pth"), ref, "pth-legacy");
  check_against_reference(fixture("reduced_tar.pth"), ref, "pth-tar");

  // The reference holds the values that catch a sloppy copy: -0.0 and a float32 subnormal.
  Tensor conv1 = SafetensorsFile::open(ref).read("conv1.weight");
  CHECK(std::signbit(conv1.data<float>()[0]));
  CHECK(conv1.data<float>()[1] == 1e-40f);

  for (const char* file : {"reduced_zip.pth", "reduced_legacy.pth", "reduced_tar.pth"}) {
    CAPTURE(file);
    PthFile f = PthFile::open(fixture(file));
    CHECK(f.entries().front().name == "conv1.weight");
    CHECK(f.entries().back().name == "fc.bias");
    const PthEntry& w = entry(f, "conv1.weight");
    CHECK(w.storage_type == "FloatStorage");
    CHECK(w.shape == Shape{4, 3, 7, 7});
    CHECK(w.stride == std::vector<int64_t>{147, 49, 7, 1});
    CHECK(w.storage_offset == 0);
    const PthEntry& counter = entry(f, "layer2.0.downsample.1.num_batches_tracked");
    CHECK(counter.storage_type == "LongStorage");
    CHECK(counter.dtype == DType::I64);
    CHECK(counter.shape == Shape{});
    CHECK(f.read("bn1.num_batches_tracked").data<int64_t>()[0] == 1000);
  }
}

TEST_CASE("pth: views, float16, bfloat16, float64 and integer storages in every layout") {
  const std::string ref = fixture("views_ref.safetensors");
  check_against_reference(fixture("views_zip.pth"), ref, "pth-zip");
  check_against_reference(fixture("views_legacy.pth"), ref, "pth-legacy");
  check_against_reference(fixture("views_tar.pth"), ref, "pth-tar");

  for (const char* file : {"views_zip.pth", "views_legacy.pth", "views_tar.pth"}) {
    CAPTURE(file);
    PthFile f = PthFile::open(fixture(file));
    const PthEntry& base = entry(f, "base");
    const PthEntry& transposed = entry(f, "transposed");
    const PthEntry& narrowed = entry(f, "narrowed");
    CHECK(transposed.storage_key == base.storage_key);  // saved as views of one storage, not copies
    CHECK(narrowed.storage_key == base.storage_key);
    CHECK(transposed.stride == std::vector<int64_t>{1, 4});
    CHECK(narrowed.storage_offset == 5);
    CHECK(narrowed.stride == std::vector<int64_t>{4, 1});
    CHECK(entry(f, "expanded").stride == std::vector<int64_t>{0, 1});
    CHECK(entry(f, "half").storage_type == "HalfStorage");
    CHECK(entry(f, "half").dtype == DType::F32);
    CHECK(entry(f, "bf16").storage_type == "BFloat16Storage");
    CHECK(entry(f, "double").dtype == DType::F64);
    CHECK(entry(f, "int8").storage_type == "CharStorage");
    CHECK(entry(f, "uint8").dtype == DType::I64);
    CHECK(entry(f, "scalar").shape == Shape{});
    CHECK(entry(f, "empty").shape == Shape{0, 3});
    // Element (i, j) of the transposed view is element (j, i) of its base.
    Tensor b = f.read("base"), t = f.read("transposed");
    CHECK(t.data<float>()[1 * 3 + 2] == b.data<float>()[2 * 4 + 1]);
    Tensor h = f.read("half");
    CHECK(h.data<float>()[0] == 1.5f);
    CHECK(std::isinf(h.data<float>()[4]));
    CHECK(std::isnan(h.data<float>()[6]));
    CHECK(f.read("int8").data<int64_t>()[0] == -128);
    CHECK(f.read("uint8").data<int64_t>()[2] == 255);
  }
}

TEST_CASE("pth zip: without a central directory the entries are found by scanning for data descriptors") {
  TempDir dir;
  for (const char* name : {"reduced_zip.pth", "reduced_zip64.pth", "views_zip.pth"}) {
    CAPTURE(name);
    ZipReader full = ZipReader::open(BinaryFile::open(fixture(name)));
    REQUIRE(full.has_central_directory());
    std::string bytes = read_bytes(fixture(name));
    const ZipEntry& last = full.entries().back();
    size_t cd_start = bytes.find("PK\x01\x02", last.data_offset + last.size);
    REQUIRE(cd_start != std::string::npos);
    std::string cut = write_bytes(dir.file(name), bytes.substr(0, cd_start));

    ZipReader scanned = ZipReader::open(BinaryFile::open(cut));
    CHECK_FALSE(scanned.has_central_directory());
    REQUIRE(scanned.entries().size() == full.entries().size());
    for (size_t i = 0; i < full.entries().size(); ++i) {
      const ZipEntry &a = full.entries()[i], &b = scanned.entries()[i];
      CAPTURE(a.name);
      CHECK(b.name == a.name);
      CHECK(b.data_offset == a.data_offset);
      CHECK(b.size == a.size);
      CHECK(b.crc32 == a.crc32);
      CHECK(b.complete);
    }
    std::string ref = fixture(std::string(name).rfind("views", 0) == 0 ? "views_ref.safetensors" : "reduced_ref.safetensors");
    check_against_reference(cut, ref, "pth-zip");
  }
  // The decoy storage starts with "PK\7\8" and 12 zero bytes: a descriptor of an empty payload, but for what follows.
  ZipReader views = ZipReader::open(BinaryFile::open(dir.file("views_zip.pth")));
  PthFile f = PthFile::open(dir.file("views_zip.pth"));
  const ZipEntry* decoy = views.find("views_zip/data/" + entry(f, "decoy").storage_key);
  REQUIRE(decoy != nullptr);
  CHECK(decoy->size == 24);
  CHECK(read_bytes(fixture("views_zip.pth")).substr(decoy->data_offset, 4) == "PK\x07\x08");
}

TEST_CASE("pth zip: a file cut inside a storage lists every key and names the truncated tensor") {
  TempDir dir;
  const std::string good = fixture("reduced_zip.pth");
  ZipReader zip = ZipReader::open(BinaryFile::open(good));
  PthFile full = PthFile::open(good);
  const ZipEntry* cut_entry = zip.find("reduced_zip/data/5");
  REQUIRE(cut_entry != nullptr);
  const uint64_t kept = cut_entry->size / 2;
  std::string path = write_bytes(dir.file("cut.pth"), read_bytes(good).substr(0, cut_entry->data_offset + kept));

  PthFile f = PthFile::open(path);
  REQUIRE(f.entries().size() == full.entries().size());
  SafetensorsFile ref = SafetensorsFile::open(fixture("reduced_ref.safetensors"));
  size_t readable = 0;
  for (const PthEntry& e : f.entries()) {
    CAPTURE(e.name);
    CHECK(e.shape == entry(full, e.name).shape);
    const ZipEntry* z = zip.find("reduced_zip/data/" + e.storage_key);
    REQUIRE(z != nullptr);
    if (z->data_offset < cut_entry->data_offset) {
      CHECK(test::bit_identical(f.read(e.name), ref.read(e.name)));
      ++readable;
    } else {
      uint64_t held = z == cut_entry ? kept : 0;
      CHECK(read_error(f, e.name) == str(path, ": tensor '", e.name, "' (storage '", e.storage_key,
                                         "') is truncated: needs ", z->size, " bytes, the file holds ", held));
    }
  }
  CHECK(readable > 0);
  CHECK(readable < f.entries().size() - 1);
  CHECK_THROWS_WITH_AS(f.read_all(), doctest::Contains("is truncated: needs"), Error);
}

TEST_CASE("pth: the real resnet18-miniimagenet.pth (zip layout, 122 entries)") {
  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  PthFile f = PthFile::open(data + "/weights/resnet18-miniimagenet.pth");
  auto t1 = Clock::now();
  ImportedCheckpoint all = f.read_all();
  auto t2 = Clock::now();
  MESSAGE("resnet18-miniimagenet.pth: open ", std::chrono::duration<double, std::milli>(t1 - t0).count(),
          " ms, read_all ", std::chrono::duration<double, std::milli>(t2 - t1).count(), " ms");

  CHECK(f.format() == "pth-zip");
  auto layout = torchvision_layout(data);
  REQUIRE(layout.size() == 122);
  REQUIRE(f.entries().size() == 122);
  REQUIRE(all.tensors.size() == 122);
  for (size_t i = 0; i < layout.size(); ++i) {
    const auto& [name, shape] = layout[i];
    const PthEntry& e = f.entries()[i];
    CAPTURE(name);
    CHECK(e.name == name);
    Shape expected = name == "fc.weight" ? Shape{100, 512} : name == "fc.bias" ? Shape{100} : shape;  // 100 classes
    CHECK(e.shape == expected);
    bool counter = name.find("num_batches_tracked") != std::string::npos;
    CHECK(e.dtype == (counter ? DType::I64 : DType::F32));
    CHECK(all.tensors[i].name == name);
    CHECK(all.tensors[i].value.shape() == expected);
    if (counter) CHECK(all.tensors[i].value.data<int64_t>()[0] > 0);
    if (name.find("running_var") != std::string::npos) {
      bool positive = true;
      for (double v : all.tensors[i].value.to_vector()) positive &= std::isfinite(v) && v > 0;
      CHECK(positive);
    }
  }
  for (const ImportedTensor& t : all.tensors)
    if (t.name == "layer4.1.conv2.weight") CHECK(test::bit_identical(f.read(t.name), t.value));
}

TEST_CASE("pth: the real truncated zip resnet18-f37072fd (no central directory) lists 102 keys") {
  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  const std::string path = data + "/weights/resnet18-f37072fd.truncated.pth";
  PthFile f = PthFile::open(path);
  CHECK(f.format() == "pth-zip");
  REQUIRE(f.entries().size() == 102);
  CHECK(f.entries()[0].name == "conv1.weight");
  CHECK(f.entries()[1].name == "bn1.running_mean");
  CHECK(shapes_of(f) == layout_without_counters(data));

  std::set<std::string> readable;
  for (const PthEntry& e : f.entries()) {
    std::string err = read_error(f, e.name);
    if (err.empty()) readable.insert(e.name);
    else CHECK_MESSAGE(err.find("is truncated: needs") != std::string::npos, err);
  }
  // The five storage entries before the cut, in file order.
  CHECK(readable == std::set<std::string>{"layer1.0.bn1.running_var", "layer3.0.bn1.running_mean",
                                          "layer2.0.downsample.1.bias", "layer4.1.bn2.weight", "layer2.1.bn1.running_var"});
  CHECK(read_error(f, "layer4.1.conv1.weight") ==
        path + ": tensor 'layer4.1.conv1.weight' (storage '140218745366176') is truncated: needs 9437184 bytes, "
               "the file holds 561597");
  CHECK(read_error(f, "conv1.weight") == str(path, ": tensor 'conv1.weight' (storage '", entry(f, "conv1.weight").storage_key,
                                             "') is truncated: needs 37632 bytes, the file holds 0"));
  Tensor bias = f.read("layer2.0.downsample.1.bias");
  CHECK(bias.shape() == Shape{128});
}

TEST_CASE("pth: the real 2017 tar-layout head of resnet18-5c106cde lists 102 keys and reads what it holds") {
  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  const std::string path = data + "/weights/resnet18-5c106cde.head1MiB.pth";
  PthFile f = PthFile::open(path);
  CHECK(f.format() == "pth-tar");
  REQUIRE(f.entries().size() == 102);
  CHECK(f.entries()[0].name == "conv1.weight");
  CHECK(f.entries()[1].name == "bn1.running_mean");  // the 2017 BatchNorm order
  CHECK(shapes_of(f) == layout_without_counters(data));

  // conv1.weight's 9408 floats start at byte 26218 (found with Python's tarfile and pickle).
  Tensor conv1 = f.read("conv1.weight");
  REQUIRE(conv1.shape() == Shape{64, 3, 7, 7});
  std::string raw = read_bytes(path).substr(26218, 9408 * 4);
  CHECK(std::memcmp(conv1.raw(), raw.data(), raw.size()) == 0);

  size_t readable = 0;
  for (const PthEntry& e : f.entries()) {
    std::string err = read_error(f, e.name);
    if (err.empty()) ++readable;
    else CHECK_MESSAGE(err.find("is truncated: needs") != std::string::npos, err);
  }
  CHECK(readable == 16);  // the storages before the cut
  CHECK(read_error(f, "layer3.1.conv2.weight") ==
        path + ": tensor 'layer3.1.conv2.weight' (storage '404926896') is truncated: needs 2359296 bytes, the file "
               "holds 451736");
  CHECK(read_error(f, "fc.weight") == str(path, ": tensor 'fc.weight' (storage '", entry(f, "fc.weight").storage_key,
                                          "') is truncated: needs 2048000 bytes, the file holds 0"));
}

TEST_CASE("pth: a pickle that calls os.system is rejected by name and nothing runs") {
  const std::string marker = "/tmp/tl_pth_fixture_was_executed";  // what the fixture's command would create
  fs::remove(marker);
  const std::string path = fixture("malicious_zip.pth");
  std::string err = open_error(path);
  CHECK(err == path + ": malicious/data.pkl: pickle global 'os.system' is not allowed in a checkpoint");
  CHECK_FALSE(fs::exists(marker));
}

TEST_CASE("pth zip: corrupt archives are refused with a message naming what is wrong") {
  TempDir dir;
  const std::string good = fixture("reduced_zip.pth");
  const std::string bytes = read_bytes(good);
  ZipReader zip = ZipReader::open(BinaryFile::open(good));
  const ZipEntry* e3 = zip.find("reduced_zip/data/3");
  REQUIRE(e3 != nullptr);
  const size_t record = bytes.find("PK\x01\x02");  // the central directory record of data/3
  const size_t record3 = bytes.find("reduced_zip/data/3", record) - 46;
  REQUIRE(bytes.compare(record3, 4, "PK\x01\x02") == 0);

  SUBCASE("bad local header signature") {
    std::string b = bytes;
    b[e3->header_offset] = 'X';
    std::string path = write_bytes(dir.file("sig.pth"), b);
    CHECK(open_error(path) == str(path, ": byte ", e3->header_offset,
                                  ": expected a zip local file header signature, found 0x04034b58"));
  }
  SUBCASE("entry running past the end of the file") {
    std::string b = bytes;
    put_le32(b, record3 + 20, 0x7FFFFFF0);
    put_le32(b, record3 + 24, 0x7FFFFFF0);
    std::string path = write_bytes(dir.file("past.pth"), b);
    CHECK(open_error(path) ==
          str(path, ": zip entry 'reduced_zip/data/3': payload bytes [", e3->data_offset, ",", e3->data_offset + 0x7FFFFFF0,
              ") run past the start of the central directory at byte ", record, " (the file has ", b.size(), " bytes)"));
  }
  SUBCASE("missing data.pkl") {
    std::string b = bytes;
    for (size_t at = b.find("reduced_zip/data.pkl"); at != std::string::npos; at = b.find("reduced_zip/data.pkl", at))
      b[at + 19] = 'x';
    std::string path = write_bytes(dir.file("nopkl.pth"), b);
    CHECK(open_error(path) == path + ": no 'reduced_zip/data.pkl' in the zip archive: not a torch.save checkpoint");
  }
  SUBCASE("compressed entry") {
    std::string b = bytes;
    b[record3 + 10] = 8;  // deflate
    std::string path = write_bytes(dir.file("deflate.pth"), b);
    CHECK(open_error(path) == path + ": zip entry 'reduced_zip/data/3' is compressed (method 8); torch.save stores "
                                     "entries uncompressed and tl reads only stored entries");
  }
  SUBCASE("payload byte flipped: the CRC-32 catches it on read") {
    std::string b = bytes;
    b[e3->data_offset + 5] ^= 0x40;
    std::string path = write_bytes(dir.file("crc.pth"), b);
    PthFile f = PthFile::open(path);
    std::string name;
    for (const PthEntry& e : f.entries())
      if (e.storage_key == "3") name = e.name;
    CHECK(read_error(f, name).rfind(path + ": zip entry 'reduced_zip/data/3': CRC-32 mismatch (stored 0x", 0) == 0);
    CHECK_THROWS_WITH_AS(f.read_all(), doctest::Contains("CRC-32 mismatch"), Error);
  }
}

TEST_CASE("pth legacy: truncated and corrupt streams") {
  TempDir dir;
  const std::string good = fixture("reduced_legacy.pth");
  const std::string bytes = read_bytes(good);
  PthFile full = PthFile::open(good);
  // The storages follow the pickles in sorted key order, each as an 8-byte count and its bytes.
  const PthEntry* last = nullptr;
  uint64_t data_bytes = 0;
  for (const PthEntry& e : full.entries()) {
    data_bytes += 8 + static_cast<uint64_t>(shape_numel(e.shape)) * (e.dtype == DType::I64 ? 8 : 4);
    if (!last || e.storage_key > last->storage_key) last = &e;
  }
  const size_t data_start = bytes.size() - data_bytes;
  const uint64_t last_bytes = static_cast<uint64_t>(shape_numel(last->shape)) * 4;

  SUBCASE("cut inside the last storage") {
    std::string path = write_bytes(dir.file("cut.pth"), bytes.substr(0, bytes.size() - 6));
    PthFile f = PthFile::open(path);
    CHECK(f.entries().size() == full.entries().size());
    CHECK(read_error(f, last->name) == str(path, ": tensor '", last->name, "' (storage '", last->storage_key,
                                           "') is truncated: needs ", last_bytes, " bytes, the file holds ", last_bytes - 6));
    CHECK(test::bit_identical(f.read("conv1.weight"), full.read("conv1.weight")));
  }
  SUBCASE("cut inside the state_dict pickle") {
    std::string path = write_bytes(dir.file("pickle.pth"), bytes.substr(0, 400));
    CHECK(open_error(path).rfind(path + ": state_dict pickle: ", 0) == 0);
  }
  SUBCASE("wrong element count") {
    std::string b = bytes;
    put_le32(b, data_start, 12345);
    std::string path = write_bytes(dir.file("count.pth"), b);
    CHECK(open_error(path) == str(path, ": storage '0' at byte ", data_start, " holds 12345 elements but the pickle declares ",
                                  shape_numel(entry(full, "conv1.weight").shape)));
  }
  SUBCASE("bad magic number") {
    std::string b = bytes;
    b[6] ^= 1;
    std::string path = write_bytes(dir.file("magic.pth"), b);
    CHECK(open_error(path) == path + ": invalid magic number: not a torch.save legacy stream (or a corrupt one)");
  }
  SUBCASE("a stride-0 view of 2^40 elements over one stored float") {
    const std::string bomb = fixture("bomb_legacy.pth");
    CHECK(open_error(bomb) == bomb + ": tensor 'bomb' (size [1099511627776], stride [0]) repeats 1 stored elements as "
                                     "1099511627776; refusing to expand it (at most 16x)");
  }
}

TEST_CASE("pth tar: bad checksums, truncated members and cut storages") {
  TempDir dir;
  const std::string good = fixture("reduced_tar.pth");
  const std::string bytes = read_bytes(good);
  TarReader tar = TarReader::open(BinaryFile::open(good));
  CHECK_FALSE(tar.truncated());
  const TarMember* tensors = tar.find("tensors");
  const TarMember* storages = tar.find("storages");
  REQUIRE(tensors != nullptr);
  REQUIRE(storages != nullptr);

  SUBCASE("checksum mismatch") {
    std::string b = bytes;
    b[tensors->header_offset + 136] ^= 1;  // a digit of the mtime field
    std::string path = write_bytes(dir.file("sum.pth"), b);
    CHECK(open_error(path).rfind(str(path, ": tar header at byte ", tensors->header_offset,
                                     " ('tensors'): checksum mismatch (header says "), 0) == 0);
  }
  SUBCASE("cut inside the tensors member") {
    std::string path = write_bytes(dir.file("tensors.pth"), bytes.substr(0, tensors->data_offset + 100));
    CHECK(open_error(path) == str(path, ": tar member 'tensors' is truncated: it has ", tensors->size,
                                  " bytes, the file holds 100"));
  }
  SUBCASE("cut in the middle of the storages member") {
    std::string path = write_bytes(dir.file("storages.pth"), bytes.substr(0, storages->data_offset + storages->size / 2));
    PthFile f = PthFile::open(path);
    REQUIRE(f.entries().size() == PthFile::open(good).entries().size());
    SafetensorsFile ref = SafetensorsFile::open(fixture("reduced_ref.safetensors"));
    size_t readable = 0;
    for (const PthEntry& e : f.entries()) {
      std::string err = read_error(f, e.name);
      if (err.empty()) {
        CHECK(test::bit_identical(f.read(e.name), ref.read(e.name)));
        ++readable;
      } else {
        CHECK_MESSAGE(err.find("is truncated: needs") != std::string::npos, err);
      }
    }
    CHECK(readable > 10);
    CHECK(readable < f.entries().size() - 10);
  }
  SUBCASE("cut inside the first storage (conv1.weight)") {
    std::string path = write_bytes(dir.file("first.pth"), bytes.substr(0, storages->data_offset + 1000));
    PthFile f = PthFile::open(path);
    // The member starts with the storage count, conv1's (key, location, type) and its element count: 54 bytes
    // (Python's pickle.load on the fixture), so 946 of conv1's 588 * 4 bytes are left.
    CHECK(read_error(f, "conv1.weight") == str(path, ": tensor 'conv1.weight' (storage '", entry(f, "conv1.weight").storage_key,
                                               "') is truncated: needs 2352 bytes, the file holds 946"));
    CHECK(read_error(f, "bn1.weight") == str(path, ": tensor 'bn1.weight' (storage '", entry(f, "bn1.weight").storage_key,
                                             "') is truncated: needs 16 bytes, the file holds 0"));
  }
}

TEST_CASE("pth: files that are not checkpoints, and unknown names") {
  TempDir dir;
  std::string text = write_bytes(dir.file("notes.txt"), "hello, this is not a checkpoint\n");
  CHECK(open_error(text) == text + ": not a PyTorch checkpoint: no zip, tar or pickle signature at the start of the "
                                   "file (32 bytes)");
  std::string empty = write_bytes(dir.file("empty.pth"), "");
  CHECK(open_error(empty).find("not a PyTorch checkpoint") != std::string::npos);
  CHECK(open_error(dir.file("missing.pth")).rfind(dir.file("missing.pth") + ": cannot open", 0) == 0);
  PthFile f = PthFile::open(fixture("views_zip.pth"));
  CHECK(read_error(f, "nope") == fixture("views_zip.pth") + ": no tensor named 'nope'");
}
