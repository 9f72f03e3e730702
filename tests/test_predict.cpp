// tl predict end to end, through the built program, on models that tl transfer extract trains here on a small slice
// of the real ants/bees images with the real ResNet18 backbone.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/run_tool.h"
#include "support/test_util.h"
#include "support/hymenoptera_slice.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

using tl::test::copy_slice;

namespace {

// One folder per process, shared by the test cases (later ones reuse earlier outputs), removed at exit.
tl::test::TempDir& scratch() {
  static tl::test::TempDir dir("predict");
  return dir;
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }


std::string line_with(const std::string& text, const std::string& start) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(start, 0) == 0) return line;
  return "";
}

// "best val accuracy 0.7333 (22/30) at epoch 9" -> "0.7333 (22/30)"
std::string best_accuracy(const std::string& output) {
  std::string line = line_with(output, "best val accuracy ");
  size_t end = line.find(')');
  return end == std::string::npos ? "" : line.substr(18, end + 1 - 18);
}

struct Trained {
  fs::path data, model, binary_model;
  std::string accuracy, binary_accuracy;  // as transfer printed them
  std::string log;                        // what the two transfer runs printed
};

// 20 train + 15 val images per class; a softmax and a sigmoid (--binary) head trained on the same cached features.
const Trained& trained() {
  static Trained t = [] {
    Trained t;
    std::string shared = tl::test::shared_data_dir();
    if (shared.empty()) return t;
    t.data = scratch().path / "slice";
    copy_slice(fs::path(shared) / "hymenoptera", t.data, "train", 20);
    copy_slice(fs::path(shared) / "hymenoptera", t.data, "val", 15);
    std::string common = "transfer extract --data " + q(t.data) + " --weights " +
                         q(shared + "/weights/resnet18-miniimagenet.pth") + " --image-size 96 --epochs 20 --threads 2" +
                         " --cache-dir " + q(scratch().path / "cache");
    auto softmax = tl::test::run_tool(common + " --output " + q(scratch().path / "softmax"));
    auto binary = tl::test::run_tool(common + " --binary --output " + q(scratch().path / "binary"));
    t.log = softmax.output + binary.output;
    if (softmax.exit_code != 0 || binary.exit_code != 0) return t;  // accuracies stay empty: the tests fail
    t.model = scratch().path / "softmax" / "model.safetensors";
    t.binary_model = scratch().path / "binary" / "model.safetensors";
    t.accuracy = best_accuracy(softmax.output);
    t.binary_accuracy = best_accuracy(binary.output);
    return t;
  }();
  return t;
}

}  // namespace

TEST_CASE("tl predict over the val folder reproduces transfer's val accuracy, softmax and binary heads") {
  const Trained& t = trained();
  if (t.model.empty()) {
    MESSAGE("shared/data not found: tl predict tests skipped");
    return;
  }
  INFO(t.log);
  REQUIRE(t.accuracy.size() > 0);
  REQUIRE(t.binary_accuracy.size() > 0);
  auto run = tl::test::run_tool("predict " + q(t.model) + " " + q(t.data / "val") + " --threads 2");
  INFO(run.output);
  CHECK(run.exit_code == 0);
  CHECK(line_with(run.output, "accuracy ") == "accuracy " + t.accuracy + " over " + (t.data / "val").string());

  auto binary = tl::test::run_tool("predict " + q(t.binary_model) + " " + q(t.data / "val") + " --threads 2");
  INFO(binary.output);
  CHECK(binary.exit_code == 0);
  CHECK(line_with(binary.output, "accuracy ") == "accuracy " + t.binary_accuracy + " over " + (t.data / "val").string());
}

TEST_CASE("tl predict: top-K lines, CSV, single files, and unreadable files reported and skipped") {
  const Trained& t = trained();
  if (t.model.empty()) {
    MESSAGE("shared/data not found: tl predict tests skipped");
    return;
  }
  // A folder of 3 good images and 1 broken one, plus an image named directly.
  fs::path mixed = scratch().path / "mixed";
  fs::create_directories(mixed / "nested");
  std::vector<fs::path> good;
  for (auto& e : fs::directory_iterator(t.data / "val" / "bees")) good.push_back(e.path());
  std::sort(good.begin(), good.end());
  fs::copy_file(good[0], mixed / "a.jpg");
  fs::copy_file(good[1], mixed / "nested" / "b.jpg");
  fs::copy_file(good[2], mixed / "c.JPG");
  std::ofstream(mixed / "broken.jpg") << "not a jpeg at all";
  std::ofstream(mixed / "notes.txt") << "ignored: not an image extension";
  fs::path csv = scratch().path / "predictions.csv";

  auto run = tl::test::run_tool("predict " + q(t.model) + " " + q(mixed) + " " + q(good[3]) + " --top 2 --csv " +
                                q(csv) + " --threads 2");
  INFO(run.output);
  CHECK(run.exit_code == 1);  // one file failed
  CHECK(run.output.find((mixed / "broken.jpg").string()) != std::string::npos);
  CHECK(run.output.find("1 of 5 files could not be read") != std::string::npos);
  CHECK(run.output.find("notes.txt") == std::string::npos);
  CHECK(run.output.find("accuracy ") == std::string::npos);  // no class-named sub-folders here
  for (const fs::path& p : {mixed / "a.jpg", mixed / "nested" / "b.jpg", mixed / "c.JPG", good[3]}) {
    std::string line = line_with(run.output, p.string() + ":");
    INFO(p.string());
    REQUIRE(line.size() > 0);
    // "<path>: bees 0.8123 ants 0.1877": two classes whose probabilities add up to 1.
    std::istringstream fields(line.substr(p.string().size() + 1));
    std::string c1, c2;
    double p1 = 0, p2 = 0;
    fields >> c1 >> p1 >> c2 >> p2;
    CHECK(((c1 == "ants" && c2 == "bees") || (c1 == "bees" && c2 == "ants")));
    CHECK(p1 >= p2);
    CHECK(p1 + p2 == doctest::Approx(1).epsilon(2e-4));  // each printed with 4 decimals
  }
  std::ifstream in(csv);
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(line);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == "path,label,class_1,probability_1,class_2,probability_2");
}

TEST_CASE("tl predict --help and errors") {
  auto help = tl::test::run_tool("predict --help");
  CHECK(help.exit_code == 0);
  for (const char* option : {"MODEL", "IMAGE|FOLDER", "--top", "--csv"})
    CHECK_MESSAGE(help.output.find(option) != std::string::npos, option);

  auto missing = tl::test::run_tool("predict /nonexistent/model.safetensors /tmp");
  CHECK(missing.exit_code == 2);
  CHECK(missing.output.find("/nonexistent/model.safetensors") != std::string::npos);

  auto no_images = tl::test::run_tool("predict model.safetensors");
  CHECK(no_images.exit_code == 2);
  CHECK(no_images.output.find("expected 2 positional") != std::string::npos);
}
