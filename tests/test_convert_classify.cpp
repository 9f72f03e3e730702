// End to end through the built `tl` binary (TL_TOOL_PATH): tl convert on the real checkpoints in ../shared/data
// (a whole ResNet18 and two truncated official files), on a hub-style VGG16 written here, on timm names and Keras
// fixtures; tl classify on real photos against PyTorch's top-5 (tests/fixtures/images/expected.txt, made by
// tests/fixtures/make_image_fixtures.py); and the manifest of official checkpoints against weights/manifest.tsv.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/model.h"
#include "layers/models/resnet18.h"
#include "support/test_util.h"
#include "weights/keras_h5.h"
#include "weights/manifest.h"
#include "weights/pth.h"
#include "weights/safetensors.h"
#include "support/temp_dir.h"

using namespace tl;
namespace fs = std::filesystem;

namespace {

struct TempDir : tl::test::TempDir {
  TempDir() : tl::test::TempDir("convert") {}
};

struct Run {
  int status = -1;
  std::string out, err;
  double seconds = 0;
};

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Runs `tl ARGS` with stdout and stderr captured separately.
Run run_tl(const std::string& args, const TempDir& dir) {
  std::string err_file = dir.file("stderr.txt");
  std::string command = std::string(TL_TOOL_PATH) + " " + args + " 2>" + quote(err_file);
  auto start = std::chrono::steady_clock::now();
  Run r;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) r.out.append(buffer, n);
  int raw = ::pclose(pipe);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

int count_lines_starting(const std::string& text, const std::string& prefix) {
  std::stringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.rfind(prefix, 0) == 0;
  return n;
}

std::vector<double> expected_numbers(const std::string& key) {
  std::ifstream in(test::source_dir() + "/tests/fixtures/images/expected.txt");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ": ", 0) != 0) continue;
    std::stringstream values(line.substr(key.size() + 2));
    std::vector<double> out;
    for (double v; values >> v;) out.push_back(v);
    return out;
  }
  FAIL("expected.txt has no record ", key);
  return {};
}

// The ranked lines tl classify prints under an image: "  30.15%    50  n03207743 dishrag".
std::vector<std::pair<int, double>> ranked_lines(const std::string& out, const std::string& image) {
  std::stringstream in(out.substr(out.find(image + "\n") + image.size() + 1));
  std::vector<std::pair<int, double>> rows;
  for (std::string line; std::getline(in, line) && line.rfind("  ", 0) == 0;) {
    double percent = 0;
    int index = -1;
    REQUIRE(std::sscanf(line.c_str(), " %lf%% %d", &percent, &index) == 2);
    rows.emplace_back(index, percent / 100);
  }
  return rows;
}

}  // namespace

TEST_CASE("manifest: the table in code equals weights/manifest.tsv; unknown stays unknown") {
  std::ifstream in(test::source_dir() + "/weights/manifest.tsv");
  REQUIRE(in.good());
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields;
    std::stringstream cells(line);
    for (std::string cell; std::getline(cells, cell, '\t');) fields.push_back(cell);
    REQUIRE(fields.size() == 12);
    rows.push_back(fields);
  }
  const auto& table = official_checkpoints();
  REQUIRE(rows.size() == table.size());
  auto or_unknown = [](const std::string& s) { return s.empty() ? std::string("unknown") : s; };
  for (size_t i = 0; i < rows.size(); ++i) {
    const ManifestEntry& e = table[i];
    CAPTURE(e.name);
    CHECK(rows[i] == std::vector<std::string>{e.name, e.file, e.url.empty() ? "none" : e.url, or_unknown(e.sha256),
                                              or_unknown(e.sha256_prefix), or_unknown(e.md5),
                                              e.size ? std::to_string(e.size) : "unknown", e.format, e.architecture,
                                              std::to_string(e.num_classes), e.include_top ? "yes" : "no", e.preprocessing});
    // A full hash is 64 lowercase hex digits and agrees with the prefix the file name promises.
    if (!e.sha256.empty()) {
      CHECK(e.sha256.size() == 64);
      CHECK(e.sha256.find_first_not_of("0123456789abcdef") == std::string::npos);
      CHECK(e.sha256.rfind(e.sha256_prefix, 0) == 0);
    }
    CHECK_NOTHROW(checkpoint_preprocessing(e));
  }
  CHECK(find_checkpoint("resnet18-5c106cde")->size == 46827520);
  CHECK(find_checkpoint_by_sha256("5c106cde386e87d4033832f2996f5493238eda96ccf559d1d62760c4de0613f8")->name ==
        "resnet18-5c106cde");
  // Only the name's prefix is known for the current torchvision file: it identifies by prefix.
  CHECK(find_checkpoint_by_sha256("f37072fd" + std::string(56, '0'))->name == "resnet18-f37072fd");
  CHECK(find_checkpoint_by_sha256(std::string(64, '0')) == nullptr);
  CHECK(find_checkpoint("keras-vgg16-notop")->md5 == "6d6bbae143d832006294945121d1f1fc");
  CHECK(checkpoint_preprocessing(*find_checkpoint("keras-vgg16")).bgr);
}

TEST_CASE("tl convert + tl classify: the project's ResNet18 checkpoint on real photos") {
  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  TempDir dir;
  std::string pth = data + "/weights/resnet18-miniimagenet.pth", out = dir.file("mini.safetensors");
  Run convert = run_tl("convert " + quote(pth) + " " + quote(out) + " --classes " +
                           quote(data + "/weights/resnet18-miniimagenet.classes.txt"), dir);
  INFO(convert.out, convert.err);
  REQUIRE(convert.status == 0);
  CHECK(contains(convert.out, "the manifest's resnet18-miniimagenet (sha256 matches)"));
  CHECK(contains(convert.out, "pth-zip, 122 tensors: resnet18, 100 classes, 11227812 parameters"));

  // The file: torchvision's names, bit-identical values, provenance and preprocessing in the metadata.
  SafetensorsFile file = SafetensorsFile::open(out);
  CHECK(file.entries().size() == 122);
  const auto& meta = file.metadata();
  CHECK(meta.at("architecture") == "resnet18");
  CHECK(meta.at("source.file") == "resnet18-miniimagenet.pth");
  CHECK(meta.at("source.sha256") == "d593f2368c6f11f73866c20f8d48ca4ca3c52e5b4b0e3fffc6fd131e0e483988");
  CHECK(meta.at("source.format") == "pth-zip");
  CHECK(meta.at("source.manifest") == "resnet18-miniimagenet");
  CHECK(meta.at("preprocessing.color") == "RGB");
  CHECK(meta.at("preprocessing.mean") == "0.485,0.456,0.406");
  CHECK(meta.at("num_classes") == "100");
  CHECK(contains(meta.at("class_names"), "\"n02219486 ant\""));
  PthFile source = PthFile::open(pth);
  for (const char* name : {"conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.bn2.running_var", "fc.bias",
                           "bn1.num_batches_tracked"})
    CHECK_MESSAGE(test::bit_identical(file.read(name), source.read(name)), name);

  // Loading it the way tl classify does.
  auto start = std::chrono::steady_clock::now();
  Model model;
  build_resnet18(model, 100);
  load_checkpoint(out, model);
  double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(model.class_names.size() == 100);
  MESSAGE("tl convert of resnet18-miniimagenet.pth (45 MB): ", convert.seconds, " s (whole process: sha256, read, ",
          "check, write); build + load_checkpoint of the result: ", load_seconds, " s");

  // Three photos and a bogus file: exit status 1, the bad file named on stderr, the others ranked.
  std::vector<std::string> photos = {"hymenoptera/val/ants/10308379_1b6c72e180.jpg",
                                     "hymenoptera/val/bees/1032546534_06907fe3b3.jpg",
                                     "hymenoptera/val/bees/6a00d8341c630a53ef00e553d0beb18834-800wi.jpg"};
  std::string bogus = dir.file("bogus.jpg");
  std::ofstream(bogus) << "not an image\n";
  std::string args = "classify --weights " + quote(out);
  for (size_t i = 0; i < photos.size(); ++i) {
    args += " " + quote(data + "/" + photos[i]);
    if (i == 0) args += " " + quote(bogus);
  }
  Run classify = run_tl(args, dir);
  INFO(classify.out, classify.err);
  CHECK(classify.status == 1);
  CHECK(contains(classify.err, bogus + ": not a JPEG, PNG, BMP or GIF image"));
  CHECK(!contains(classify.out, bogus));
  CHECK(contains(classify.out, "resnet18, 100 class names"));
  // PyTorch's top-5 on the same files (torchvision preprocessing, PIL decoding). Probabilities differ only through
  // JPEG decoding (stb vs libjpeg: a level on a few pixels, 4e-4 mean normalised difference) and float summation
  // order; measured at most 7e-4. A rank may swap only where PyTorch's own probabilities are that close.
  constexpr double kProbabilityTolerance = 2e-3;
  for (const std::string& photo : photos) {
    CAPTURE(photo);
    std::vector<std::pair<int, double>> rows = ranked_lines(classify.out, data + "/" + photo);
    REQUIRE(rows.size() == 5);
    std::vector<double> top = expected_numbers("classify/" + photo + "/top10");
    std::vector<double> probability = expected_numbers("classify/" + photo + "/top10_probability");
    for (size_t r = 0; r < rows.size(); ++r) {
      auto it = std::find(top.begin(), top.end(), rows[r].first);
      REQUIRE_MESSAGE(it != top.end(), "class ", rows[r].first, " is not in PyTorch's top 10");
      double theirs = probability[it - top.begin()];
      CHECK(std::abs(rows[r].second - theirs) <= kProbabilityTolerance);
      CHECK(std::abs(theirs - probability[r]) <= kProbabilityTolerance);  // same rank, or a near-tie
    }
  }
  // --top and all images readable: exit status 0.
  Run one = run_tl("classify --top 2 --weights " + quote(out) + " " + quote(data + "/" + photos[0]), dir);
  CHECK(one.status == 0);
  CHECK(ranked_lines(one.out, data + "/" + photos[0]).size() == 2);
}

TEST_CASE("tl convert --list on the truncated official files, then the truncation error") {
  std::string data = test::shared_data_dir();
  if (data.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  TempDir dir;
  for (std::string name : {"resnet18-f37072fd.truncated.pth", "resnet18-5c106cde.head1MiB.pth"}) {
    CAPTURE(name);
    std::string path = data + "/weights/" + name, out = dir.file("out.safetensors");
    Run list = run_tl("convert --list " + quote(path), dir);
    INFO(list.out, list.err);
    CHECK(list.status == 0);
    CHECK(count_lines_starting(list.out, "  ") == 102);
    CHECK(contains(list.out, "  conv1.weight                             F32  [64,3,7,7]"));
    CHECK(contains(list.out, "  fc.weight                                F32  [1000,512]"));
    CHECK(contains(list.out, "102 tensors, 11699112 elements"));  // 11,689,512 parameters + 9,600 BN statistics
    // Asked to convert: the same listing, then the reader's truncation error naming the file; nothing written.
    Run convert = run_tl("convert --list " + quote(path) + " " + quote(out), dir);
    INFO(convert.out, convert.err);
    CHECK(convert.status == 1);
    CHECK(count_lines_starting(convert.out, "  ") == 102);
    CHECK(contains(convert.err, path + ": tensor '"));
    CHECK(contains(convert.err, "is truncated"));
    CHECK(!fs::exists(out));
  }
}

TEST_CASE("tl convert: a hub-style VGG16 without top converts bit for bit; timm names are mapped") {
  TempDir dir;
  // torchvision's VGG16 features (14.7M parameters, 59 MB) with values from a fixed formula.
  std::vector<std::pair<std::string, Tensor>> tensors;
  int64_t in = 3, k = 0;
  for (int64_t index : {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}) {
    int64_t outc = index < 5 ? 64 : index < 10 ? 128 : index < 17 ? 256 : 512;
    Tensor w = Tensor::empty({outc, in, 3, 3}), b = Tensor::empty({outc});
    for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = float(((i * 7 + k) % 101) - 50) / 1000;
    for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = float(i + k) / 100;
    tensors.emplace_back("features." + std::to_string(index) + ".weight", w);
    tensors.emplace_back("features." + std::to_string(index) + ".bias", b);
    in = outc, ++k;
  }
  std::string hub = dir.file("hub.safetensors"), out = dir.file("vgg.safetensors");
  write_safetensors(hub, tensors);
  Run convert = run_tl("convert " + quote(hub) + " " + quote(out), dir);
  INFO(convert.out, convert.err);
  REQUIRE(convert.status == 0);
  CHECK(contains(convert.out, "vgg16 without top, features only, 14714688 parameters"));
  SafetensorsFile file = SafetensorsFile::open(out);
  CHECK(file.metadata().at("include_top") == "false");
  CHECK(file.metadata().at("source.format") == "safetensors");
  CHECK(file.metadata().at("preprocessing.std") == "0.229,0.224,0.225");
  REQUIRE(file.entries().size() == tensors.size());
  for (const auto& [name, value] : tensors) CHECK_MESSAGE(test::bit_identical(file.read(name), value), name);
  // No classifier to classify with.
  Run classify = run_tl("classify --weights " + quote(out) + " x.jpg", dir);
  CHECK(classify.status == 2);
  CHECK(contains(classify.err, "without a classifier (classifier.6.weight)"));

  // timm's VGG head (pre_logits.fc1/fc2 convolutions, head.fc) on narrow features: the names and the
  // conv-to-linear reshape show in the mismatch list, under torchvision's names.
  std::vector<std::pair<std::string, Tensor>> timm_tensors = {
      {"features.0.weight", Tensor::zeros({4, 3, 3, 3})}, {"features.28.weight", Tensor::zeros({4, 4, 3, 3})},
      {"pre_logits.fc1.weight", Tensor::zeros({8, 2, 1, 1})}, {"pre_logits.fc1.bias", Tensor::zeros({8})},
      {"pre_logits.fc2.weight", Tensor::zeros({8, 8, 1, 1})}, {"pre_logits.fc2.bias", Tensor::zeros({8})},
      {"head.fc.weight", Tensor::zeros({5, 8})},              {"head.fc.bias", Tensor::zeros({5})}};
  std::string timm_file = dir.file("timm.safetensors");
  write_safetensors(timm_file, timm_tensors);
  Run list = run_tl("convert --list " + quote(timm_file), dir);
  CHECK(contains(list.out, "  pre_logits.fc1.weight                    F32  [8,2,1,1]"));  // the file's own names
  Run timm = run_tl("convert " + quote(timm_file) + " " + quote(out), dir);
  INFO(timm.err);
  CHECK(timm.status == 1);
  CHECK(contains(timm.err, "timm.safetensors: the weights do not fit this vgg16"));
  CHECK(contains(timm.err, "classifier.0.weight: checkpoint F32[8,2] vs model F32[4096,25088]"));
  CHECK(contains(timm.err, "classifier.3.weight: checkpoint F32[8,8] vs model F32[4096,4096]"));
  CHECK(contains(timm.err, "classifier.6.weight: checkpoint F32[5,8] vs model F32[5,4096]"));  // 5 classes: head.fc
  CHECK(!contains(timm.err, "classifier.6.bias"));
}

TEST_CASE("tl convert and tl classify: usage and input errors") {
  TempDir dir;
  std::string text = dir.file("notes.pth");
  std::ofstream(text) << "hello\n";
  Run r = run_tl("convert " + quote(text), dir);
  CHECK(r.status == 2);
  CHECK(contains(r.err, "expected INPUT OUTPUT (or --list INPUT), got 1 file argument(s)"));
  r = run_tl("convert " + quote(text) + " " + quote(dir.file("o.safetensors")), dir);
  CHECK(r.status == 1);
  CHECK(contains(r.err, text + ": not a checkpoint tl can read"));  // weights/import.h's message
  CHECK(contains(r.err, "68 65 6c 6c 6f 0a"));
  r = run_tl("convert --arch alexnet a b", dir);
  CHECK(r.status == 2);
  r = run_tl("classify x.jpg", dir);
  CHECK(r.status == 2);
  CHECK(contains(r.err, "--weights FILE is required"));
  r = run_tl("classify --weights " + quote(text) + " x.jpg", dir);
  CHECK(r.status == 2);
  CHECK(contains(r.err, text + ": "));
  // Keras fixtures (narrow VGG16s) reach the architecture check: shapes are named, nothing is written.
  std::string keras = test::source_dir() + "/tests/fixtures/keras/vgg16_notop_keras2.h5";
  if (keras_h5_supported() && fs::exists(keras)) {
    r = run_tl("convert " + quote(keras) + " " + quote(dir.file("k.safetensors")), dir);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "features.0.weight: checkpoint F32[4,3,3,3] vs model F32[64,3,3,3]"));
  }
  std::string data = test::shared_data_dir();
  if (!data.empty()) {
    std::string pth = data + "/weights/resnet18-miniimagenet.pth";
    r = run_tl("convert --num-classes 1000 " + quote(pth) + " " + quote(dir.file("x.safetensors")), dir);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "--num-classes 1000 but the file's classifier has 100 outputs"));
    r = run_tl("convert --arch vgg16 " + quote(pth) + " " + quote(dir.file("x.safetensors")), dir);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "--arch vgg16 but the checkpoint is a resnet18"));
  }
}
