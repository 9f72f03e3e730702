// The recipes of docs/recipes.md end to end, through the built tl program. Each test reads its command from the
// docs (so the documented command is the tested one), keeps its flags (mode, optimizer, learning rate, decay, head,
// freezing, augmentation, split) and only shrinks the sizes: image size 32 or 64, 2 epochs, a few dozen images, its
// own output and cache folders, 2 threads. It checks the exit status, the files written and the trainable/frozen
// parameter counts the recipe must print. VGG16 recipes run from random initialisation (no VGG16 weights exist on
// these machines); ResNet18 recipes use the mini-ImageNet backbone in ../shared/data and skip without it.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/model.h"
#include "engine/rng.h"
#include "layers/models/vgg16.h"
#include "loaders/transforms.h"
#include "report/png_writer.h"
#include "support/run_tool.h"
#include "support/test_util.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

namespace {

const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

// One folder per process, shared by the test cases (later ones reuse earlier outputs), removed at exit.
tl::test::TempDir& scratch() {
  static tl::test::TempDir dir("recipes");
  return dir;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---- The command of a recipe, as written in docs/recipes.md, with its sizes changed.

struct Command {
  std::vector<std::string> tokens;  // after the program name: "transfer", MODE, flags...

  size_t find(const std::string& flag) const {
    return static_cast<size_t>(std::find(tokens.begin(), tokens.end(), flag) - tokens.begin());
  }
  bool has_value(size_t at) const { return at + 1 < tokens.size() && tokens[at + 1].rfind("--", 0) != 0; }
  std::string get(const std::string& flag) const {
    size_t at = find(flag);
    return at < tokens.size() && has_value(at) ? tokens[at + 1] : "";
  }
  // Replaces the value of `flag`, or appends the flag when the recipe does not give it.
  Command& set(const std::string& flag, const std::string& value) {
    size_t at = find(flag);
    if (at == tokens.size()) {
      tokens.push_back(flag);
      tokens.push_back(value);
    } else {
      REQUIRE_MESSAGE(has_value(at), flag, " has no value in the recipe");
      tokens[at + 1] = value;
    }
    return *this;
  }
  Command& remove(const std::string& flag) {
    size_t at = find(flag);
    REQUIRE_MESSAGE(at < tokens.size(), flag, " is not in the recipe");
    tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(at),
                 tokens.begin() + static_cast<std::ptrdiff_t>(at + (has_value(at) ? 2 : 1)));
    return *this;
  }
  std::string line() const {
    std::string out;
    for (const std::string& t : tokens) out += (out.empty() ? "'" : " '") + t + "'";
    return out;
  }
};

// Shell words of a command: whitespace-separated, single quotes grouping (all the docs use).
std::vector<std::string> shell_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool quoted = false, in_word = false;
  for (char c : text) {
    if (c == '\'') {
      quoted = !quoted;
      in_word = true;
    } else if (!quoted && (c == ' ' || c == '\t' || c == '\n')) {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

// The ```sh block after "<!-- recipe: NAME -->" in docs/recipes.md, continuation lines joined, "build/tl" dropped.
Command recipe(const std::string& name) {
  std::istringstream in(read_text(fs::path(tl::test::source_dir()) / "docs" / "recipes.md"));
  std::string line, text;
  bool found = false;
  while (std::getline(in, line) && !found) found = line == "<!-- recipe: " + name + " -->";
  REQUIRE_MESSAGE(found, "docs/recipes.md has no '<!-- recipe: ", name, " -->'");
  REQUIRE(line == "```sh");
  while (std::getline(in, line) && line != "```") {
    if (!line.empty() && line.back() == '\\') line.pop_back();
    text += line + " ";
  }
  Command c;
  c.tokens = shell_words(text);
  REQUIRE(c.tokens.size() > 3);
  REQUIRE(c.tokens[0] == "build/tl");
  c.tokens.erase(c.tokens.begin());
  REQUIRE(c.tokens[0] == "transfer");
  return c;
}

// Runs the recipe's command with its output and feature cache in the scratch folder and 2 threads.
tl::test::ToolResult run_recipe(Command c, const fs::path& out) {
  c.set("--output", out.string()).set("--cache-dir", (scratch().path / "cache").string()).set("--threads", "2");
  return tl::test::run_tool(c.line());
}

bool has_line(const std::string& output, const std::string& start) {
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(start, 0) == 0) return true;
  return false;
}

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// What every run writes: the best model, the curves (header + one row per epoch) and the confusion matrices.
void check_outputs(const fs::path& out, int epochs, bool test_split) {
  for (const char* f : {"model.safetensors", "history.csv", "history.png", "confusion_val.csv", "confusion_val.png"})
    CHECK_MESSAGE((fs::exists(out / f) && fs::file_size(out / f) > 0), f);
  CHECK(count_lines(out / "history.csv") == epochs + 1);
  CHECK(fs::exists(out / "confusion_test.csv") == test_split);
  CHECK(fs::exists(out / "confusion_test.png") == test_split);
}

// ---- Data and weights.

// The first `count` JPEGs (sorted) of hymenoptera/<split>/<cls> copied to <dst>/<cls>.
void copy_jpegs(const fs::path& src, const fs::path& dst, int count) {
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(src))
    if (e.path().extension() == ".jpg") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  fs::create_directories(dst);
  for (int i = 0; i < count; ++i) fs::copy_file(files.at(static_cast<size_t>(i)), dst / files[static_cast<size_t>(i)].filename());
}

std::string resnet18_backbone() { return tl::test::shared_data_dir() + "/weights/resnet18-miniimagenet.pth"; }

// A VGG16 without top, randomly initialised, saved with the Keras file's preprocessing metadata ("caffe": BGR,
// 0-255, mean subtracted), as `tl convert vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` would write it: the
// stand-in for the Keras weights the VGG16 recipes name.
fs::path random_vgg16_notop() {
  static fs::path made = [] {
    tl::Model model;
    tl::build_vgg16(model, 1000, false);
    tl::Rng rng(5);
    model.reset_parameters(rng);
    for (auto& [k, v] : tl::preprocessing_metadata(tl::keras_caffe_preprocessing())) model.metadata[k] = v;
    fs::path p = scratch().path / "vgg16-notop-random.safetensors";
    tl::save_checkpoint(p.string(), model);
    return p;
  }();
  return made;
}

// <root>/<split>/<class>/<i>.png for each (split, count per class): 40x36 RGB images whose colour depends on the
// class, with a per-image pattern so that no two are equal.
void write_png_folders(const fs::path& root, const std::vector<std::pair<std::string, int>>& splits,
                       const std::vector<std::string>& classes) {
  const int w = 40, h = 36;
  for (auto& [split, count] : splits) {
    for (size_t k = 0; k < classes.size(); ++k) {
      fs::path dir = root / split / classes[k];
      fs::create_directories(dir);
      for (int i = 0; i < count; ++i) {
        std::vector<uint8_t> rgb(static_cast<size_t>(w * h * 3));
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c)
              rgb[static_cast<size_t>((y * w + x) * 3 + c)] =
                  static_cast<uint8_t>((k ? 170 : 50) + c * 20 + ((x * (i + 3) + y * 7 + split.size()) % 40));
        tl::report::write_png((dir / (std::to_string(i) + ".png")).string(), w, h, rgb);
      }
    }
  }
}

// A CIFAR-10 binary folder: data_batch_1.bin (40 records), test_batch.bin (20) and batches.meta.txt (the 10 names);
// each record is a label byte and 3072 bytes (R, G, B planes of 32x32), the label cycling through the classes.
fs::path cifar10() {
  static fs::path dir = [] {
    fs::path d = scratch().path / "cifar-10-batches-bin";
    fs::create_directories(d);
    auto write_batch = [&](const char* name, int records, int seed) {
      std::ofstream f(d / name, std::ios::binary);
      for (int r = 0; r < records; ++r) {
        int label = r % 10;
        f.put(static_cast<char>(label));
        for (int i = 0; i < 3072; ++i) f.put(static_cast<char>(20 * label + (i * 5 + r * 11 + seed) % 60));
      }
    };
    write_batch("data_batch_1.bin", 40, 1);
    write_batch("test_batch.bin", 20, 2);
    std::ofstream meta(d / "batches.meta.txt");
    for (const char* n : {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"})
      meta << n << "\n";
    return d;
  }();
  return dir;
}

}  // namespace

TEST_CASE("recipe (a): frozen VGG16 + Flatten + Dense(10) on Fashion-MNIST, SGD 0.05 with Keras decay") {
  if (!fs::exists(fs::path(kFashionMnist) / "train-images-idx3-ubyte.gz")) {
    MESSAGE(kFashionMnist, " not found (apt-get install dataset-fashion-mnist): recipe (a) skipped");
    return;
  }
#ifndef TL_HAVE_ZLIB
  MESSAGE("recipe (a) skipped: the Fashion-MNIST files are gzipped and tl was built without zlib");
  return;
#endif
  Command c = recipe("a");
  CHECK(c.get("--data") == kFashionMnist);
  CHECK(c.get("--decay") == "1e-5");
  c.set("--weights", random_vgg16_notop().string()).set("--image-size", "32").set("--epochs", "2").set("--limit", "40");
  fs::path out = scratch().path / "a";
  auto r = run_recipe(c, out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  // 40 per split; val carved from train: one image of each of the 10 classes (10% of 4 rounds to 0, at least 1).
  CHECK(r.output.find("(idx): 30 train, 10 val, 40 test images; 10 classes") != std::string::npos);
  CHECK(r.output.find("image 32 (exact resize)") != std::string::npos);
  CHECK(has_line(r.output, "training sgd lr 0.05, batch 32, augmentation none"));
  // At 32 px the base gives 512x1x1: Flatten + Linear(512, 10) = 5,130 trainable; VGG16 without top has 14,714,688.
  CHECK(has_line(r.output, "trainable 5,130 of 14,719,818 parameters train (2 tensors, from head."));
  CHECK(r.output.find("features train 30 images: 30 computed (") != std::string::npos);
  CHECK(has_line(r.output, "test accuracy 0.") + has_line(r.output, "test accuracy 1.") == 1);
  check_outputs(out, 2, true);
}

TEST_CASE("recipe (b): cached bottleneck features + new softmax layer, 80/10/10 folder split, test accuracy") {
  if (tl::test::shared_data_dir().empty()) {
    MESSAGE("../shared/data not found: recipe (b) skipped");
    return;
  }
  fs::path data = scratch().path / "b-data", train = fs::path(tl::test::shared_data_dir()) / "hymenoptera" / "train";
  copy_jpegs(train / "ants", data / "ants", 20);
  copy_jpegs(train / "bees", data / "bees", 20);
  Command c = recipe("b");
  CHECK(c.get("--split") == "80,10,10");
  CHECK(c.get("--weights") == "../shared/data/weights/resnet18-miniimagenet.pth");
  c.set("--data", data.string()).set("--weights", resnet18_backbone()).set("--image-size", "64").set("--epochs", "2");
  fs::path out = scratch().path / "b";
  auto r = run_recipe(c, out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("(folder): 32 train, 4 val, 4 test images; 2 classes: ants, bees") != std::string::npos);
  CHECK(r.output.find("120 tensors loaded into resnet18") != std::string::npos);
  // Only the new fc (512 -> 2) trains; ResNet18 without its fc has 11,176,512.
  CHECK(has_line(r.output, "trainable 1,026 of 11,177,538 parameters train (2 tensors, from fc.weight)"));
  CHECK(r.output.find("features test  4 images: 4 computed (4 decoded)") != std::string::npos);
  CHECK(has_line(r.output, "test accuracy "));
  CHECK(r.output.find("(the best epoch's model)") != std::string::npos);
  CHECK(r.output.find("test_accuracy=-1") == std::string::npos);
  check_outputs(out, 2, true);
}

TEST_CASE("recipe (c): VGG16 unfrozen from block5_conv1, Dense(256)+Dropout+Dense(1, sigmoid), RMSprop, Keras augmentation") {
  fs::path data = scratch().path / "c-data";
  write_png_folders(data, {{"train", 12}, {"validation", 6}, {"test", 6}}, {"cats", "dogs"});
  Command c = recipe("c");
  CHECK(c.get("--unfreeze-from") == "block5_conv1");
  CHECK(c.get("--head") == "256,dropout=0.5");
  c.set("--data", data.string()).set("--weights", random_vgg16_notop().string()).set("--image-size", "32");
  c.set("--epochs", "2").set("--batch-size", "8");
  fs::path out = scratch().path / "c";
  auto r = run_recipe(c, out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("(folder): 24 train, 12 val, 12 test images; 2 classes: cats, dogs") != std::string::npos);
  CHECK(r.output.find("image 32 (exact resize), sigmoid + binary cross-entropy loss") != std::string::npos);
  CHECK(has_line(r.output, "training rmsprop lr 1e-05, batch 8, augmentation keras"));
  // block5_conv1..3 (features.24/26/28): 3 x (512*512*9 + 512) = 7,079,424; the head on 512 features:
  // Linear(512, 256) 131,328 + Linear(256, 1) 257. The total adds the head to VGG16's 14,714,688.
  CHECK(has_line(r.output, "trainable 7,211,009 of 14,846,273 parameters train (10 tensors, from features.24.weight)"));
  check_outputs(out, 2, true);
}

TEST_CASE("recipe (d): CIFAR-10, ResNet18 with everything but layer4 frozen") {
  if (tl::test::shared_data_dir().empty()) {
    MESSAGE("../shared/data not found: recipe (d) ResNet18 skipped");
    return;
  }
  Command c = recipe("d-resnet18");
  CHECK(c.get("--train") == "layer4.*,fc.*");
  c.set("--data", cifar10().string()).set("--weights", resnet18_backbone()).set("--image-size", "32");
  c.set("--epochs", "2").set("--batch-size", "16");
  fs::path out = scratch().path / "d-resnet18";
  auto r = run_recipe(c, out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("(cifar10): 30 train, 10 val, 20 test images; 10 classes: airplane, automobile") !=
        std::string::npos);
  CHECK(has_line(r.output, "training sgd lr 0.001, batch 16, augmentation flip"));
  // layer4 (8,393,728 in 15 tensors) + the new fc 512 -> 10 (5,130); everything before layer4 frozen.
  CHECK(has_line(r.output, "trainable 8,398,858 of 11,181,642 parameters train (17 tensors, from layer4.0.conv1.weight)"));
  check_outputs(out, 2, true);
}

TEST_CASE("recipe (d): CIFAR-10, VGG16 with classifier.6 replaced (random initialisation)") {
  Command c = recipe("d-vgg16");
  CHECK(c.get("--model") == "vgg16");
  CHECK(c.get("--train") == "classifier.*");
  c.remove("--weights").set("--data", cifar10().string()).set("--image-size", "32").set("--epochs", "2");
  c.set("--batch-size", "16");
  fs::path out = scratch().path / "d-vgg16";
  auto r = run_recipe(c, out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("warning: no --weights: vgg16 starts from a random initialisation") != std::string::npos);
  CHECK(r.output.find("head 'classifier.6' (one Linear)") != std::string::npos);
  // classifier.0 25088 -> 4096 (102,764,544) + classifier.3 4096 -> 4096 (16,781,312) + classifier.6 4096 -> 10
  // (40,970); the total is VGG16's 138,357,544 with its 1000-way classifier.6 (4,097,000) replaced.
  CHECK(has_line(r.output, "trainable 119,586,826 of 134,301,514 parameters train (6 tensors, from classifier.0.weight)"));
  check_outputs(out, 2, true);
}

TEST_CASE("recipe (e): ResNet18 as a fixed feature extractor, SGD 0.001 momentum 0.9, StepLR, Resize 256 / CenterCrop 224") {
  if (tl::test::shared_data_dir().empty()) {
    MESSAGE("../shared/data not found: recipe (e) skipped");
    return;
  }
  fs::path data = scratch().path / "e-data", src = fs::path(tl::test::shared_data_dir()) / "hymenoptera";
  for (const char* cls : {"ants", "bees"}) {
    copy_jpegs(src / "train" / cls, data / "train" / cls, 10);
    copy_jpegs(src / "val" / cls, data / "val" / cls, 5);
  }
  Command c = recipe("e");
  CHECK(c.get("--data") == "../shared/data/hymenoptera");
  CHECK(c.get("--image-size") == "224");
  CHECK(c.get("--resize") == "shorter");
  c.set("--data", data.string()).set("--weights", resnet18_backbone()).set("--image-size", "64").set("--epochs", "2");
  fs::path out = scratch().path / "e";
  auto r = run_recipe(c, out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("(folder): 20 train, 10 val, 0 test images; 2 classes: ants, bees") != std::string::npos);
  CHECK(r.output.find("image 64 (shorter side + center crop)") != std::string::npos);
  CHECK(has_line(r.output, "training sgd lr 0.001, batch 4, augmentation none"));
  CHECK(has_line(r.output, "trainable 1,026 of 11,177,538 parameters train (2 tensors, from fc.weight)"));
  CHECK(has_line(r.output, "test accuracy: no test split"));
  check_outputs(out, 2, false);
}
