// tl transfer end to end, through the built program, on a fixed slice of the real ants/bees images with the real
// ResNet18 backbone (shared/data/weights/resnet18-miniimagenet.pth), at 112 px so that the file stays fast.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/model.h"
#include "layers/models/resnet18.h"
#include "loaders/npy.h"
#include "support/run_tool.h"
#include "support/test_util.h"
#include "weights/import.h"
#include "weights/keras_h5.h"
#include "weights/pth.h"
#include "weights/safetensors.h"
#include "support/hymenoptera_slice.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

using tl::test::copy_slice;

namespace {

// One folder per process, shared by the test cases (later ones reuse earlier outputs), removed at exit.
tl::test::TempDir& scratch() {
  static tl::test::TempDir dir("transfer");
  return dir;
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }


// 40 train + 30 val images per class, made once per process; "" when shared/data is absent.
fs::path slice() {
  static fs::path made = [] {
    std::string data = tl::test::shared_data_dir();
    if (data.empty()) return fs::path();
    fs::path dst = scratch().path / "slice";
    copy_slice(fs::path(data) / "hymenoptera", dst, "train", 40);
    copy_slice(fs::path(data) / "hymenoptera", dst, "val", 30);
    return dst;
  }();
  return made;
}

std::string backbone() { return tl::test::shared_data_dir() + "/weights/resnet18-miniimagenet.pth"; }

// The number after `key` in the output ("val_correct=" -> 47), or -1.
double number_after(const std::string& text, const std::string& key) {
  size_t at = text.find(key);
  return at == std::string::npos ? -1 : std::atof(text.c_str() + at + key.size());
}

std::string line_with(const std::string& text, const std::string& start) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(start, 0) == 0) return line;
  return "";
}

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// 60 train + 20 test 32x32 records of two classes (a bright and a dark pattern) in CIFAR-10's binary format.
fs::path cifar() {
  static fs::path dir = [] {
    fs::path d = scratch().path / "cifar";
    fs::create_directories(d);
    auto write_batch = [&](const char* name, int records, int seed) {
      std::ofstream f(d / name, std::ios::binary);
      for (int r = 0; r < records; ++r) {
        uint8_t label = static_cast<uint8_t>(r % 2);
        f.put(static_cast<char>(label));
        for (int i = 0; i < 3072; ++i) f.put(static_cast<char>((label ? 180 : 60) + ((i * 7 + r * 13 + seed) % 50)));
      }
    };
    write_batch("data_batch_1.bin", 60, 1);
    write_batch("test_batch.bin", 20, 2);
    return d;
  }();
  return dir;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("tl transfer extract: accuracy floor, feature cache, export, and predict agrees") {
  if (slice().empty()) {
    MESSAGE("shared/data not found: tl transfer extract test skipped");
    return;
  }
  fs::path cache = scratch().path / "cache", out = scratch().path / "extract";
  std::string common = "transfer extract --data " + q(slice()) + " --weights " + q(backbone()) +
                       " --image-size 112 --threads 2 --seed 1 --cache-dir " + q(cache);

  // 50 epochs of Adam 1e-3 on the cached 512-d features of 80 images: 47/60 = 0.783 measured here (seeds 1-4 gave
  // 0.733-0.783; PyTorch's reference on all 244 images at 112 px is 0.745). Chance is 0.5; the floor of 0.65 leaves
  // room for thread-count rounding and still fails for a broken backbone load, transform or head.
  auto first = tl::test::run_tool(common + " --epochs 50 --output " + q(out) + " --export " + q(scratch().path / "f1.npy"));
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK(first.output.find("features train 80 images: 80 computed (80 decoded), 0 from the cache") != std::string::npos);
  CHECK(first.output.find("features val   60 images: 60 computed (60 decoded)") != std::string::npos);
  CHECK(number_after(first.output, "RESULT val_accuracy=") >= 0.65);
  CHECK(number_after(first.output, "val_count=") == 60);
  CHECK(line_with(first.output, "epoch 50/50  train loss ").size() > 0);
  CHECK(count_lines(out / "history.csv") == 51);  // header + one row per epoch
  for (const char* f : {"model.safetensors", "history.png", "confusion_val.csv", "confusion_val.png"})
    CHECK_MESSAGE(fs::file_size(out / f) > 0, f);
  CHECK_FALSE(fs::exists(out / "confusion_test.csv"));  // the slice has no test split

  // A second run decodes nothing and gets the very same features.
  auto second = tl::test::run_tool(common + " --epochs 1 --output " + q(scratch().path / "extract2") + " --export " +
                                   q(scratch().path / "f2.npy"));
  INFO(second.output);
  REQUIRE(second.exit_code == 0);
  CHECK(second.output.find("features train 80 images: 0 computed (0 decoded), 80 from the cache") != std::string::npos);
  CHECK(second.output.find("features val   60 images: 0 computed (0 decoded), 60 from the cache") != std::string::npos);
  tl::Tensor f1 = tl::read_npy((scratch().path / "f1.npy").string()), f2 = tl::read_npy((scratch().path / "f2.npy").string());
  CHECK(f1.shape() == tl::Shape{80, 512});
  CHECK(tl::test::bit_identical(f1, f2));

  // Touching one training image recomputes exactly that one.
  fs::path touched = slice() / "train" / "bees";
  touched = fs::directory_iterator(touched)->path();
  fs::last_write_time(touched, fs::last_write_time(touched) + std::chrono::seconds(5));
  auto third = tl::test::run_tool(common + " --epochs 1 --output " + q(scratch().path / "extract3"));
  INFO(third.output);
  REQUIRE(third.exit_code == 0);
  CHECK(third.output.find("features train 80 images: 1 computed (1 decoded), 79 from the cache") != std::string::npos);
  CHECK(third.output.find("features val   60 images: 0 computed (0 decoded)") != std::string::npos);

  // tl predict over the val folder reproduces the val accuracy transfer printed (same images, same geometry).
  auto predicted = tl::test::run_tool("predict " + q(out / "model.safetensors") + " " + q(slice() / "val") + " --threads 2");
  INFO(predicted.output);
  REQUIRE(predicted.exit_code == 0);
  std::string best = line_with(first.output, "best val accuracy ");
  REQUIRE(best.size() > 0);
  std::string fraction = best.substr(best.find('('), best.find(')') - best.find('(') + 1);
  CHECK(line_with(predicted.output, "accuracy ").find(fraction) != std::string::npos);
  CHECK(line_with(predicted.output, "accuracy ").find(best.substr(18, 6)) != std::string::npos);  // "0.7833"
}

TEST_CASE("tl transfer finetune leaves every frozen tensor and frozen BatchNorm statistic bit-identical") {
  if (slice().empty()) {
    MESSAGE("shared/data not found: tl transfer finetune test skipped");
    return;
  }
  fs::path out = scratch().path / "finetune";
  auto run = tl::test::run_tool("transfer finetune --data " + q(slice()) + " --weights " + q(backbone()) +
                                " --image-size 112 --epochs 1 --train 'layer4.*,fc.*' --threads 2 --output " + q(out));
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  CHECK(run.output.find("epoch 1/1  train loss ") != std::string::npos);
  CHECK(count_lines(out / "history.csv") == 2);
  for (const char* f : {"history.png", "confusion_val.csv", "confusion_val.png"}) CHECK_MESSAGE(fs::exists(out / f), f);

  tl::PthFile pth = tl::PthFile::open(backbone());
  tl::SafetensorsFile saved = tl::SafetensorsFile::open((out / "model.safetensors").string());
  int frozen = 0, changed_in_layer4 = 0;
  for (const tl::PthEntry& e : pth.entries()) {
    if (e.name.rfind("fc.", 0) == 0) continue;  // replaced by the 2-way head
    INFO(e.name);
    REQUIRE(saved.find(e.name) != nullptr);
    tl::Tensor before = pth.read(e.name), after = saved.read(e.name);
    if (e.name.rfind("layer4.", 0) == 0) {
      changed_in_layer4 += !tl::test::bit_identical(before, after);
      continue;
    }
    // conv weights, BN weight/bias, running_mean/var and num_batches_tracked of every BN outside layer4
    CHECK(tl::test::bit_identical(before, after));
    ++frozen;
  }
  CHECK(frozen == 122 - 2 - 30);  // 122 entries, fc.weight/bias, 30 under layer4
  // The selection did train: layer4's weights and its BatchNorm statistics moved.
  CHECK(changed_in_layer4 >= 20);
  CHECK(saved.find("fc.weight")->shape == tl::Shape{2, 512});
  CHECK(saved.metadata().at("class_names") == "[\"ants\",\"bees\"]");
}

TEST_CASE("tl transfer on CIFAR-10 binary batches: val carved from train, test split, two-stage and full") {
  fs::path dir = cifar();
  std::string common = "--data " + q(dir) + " --image-size 32 --threads 2 --batch-size 16 ";

  auto two = tl::test::run_tool("transfer two-stage " + common + "--stage1-epochs 1 --stage2-epochs 1 --unfreeze-from "
                                "layer4 --output " + q(scratch().path / "cifar-two"));
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  CHECK(two.output.find("(cifar10): 54 train, 6 val, 20 test images; 10 classes") != std::string::npos);
  CHECK(two.output.find("warning: no --weights") != std::string::npos);
  CHECK(two.output.find("stage 1: 1 epochs at lr 0.01; trainable 5,130 of") != std::string::npos);
  CHECK(two.output.find("stage 2: 1 epochs at lr 0.001; trainable 8,398,858 of") != std::string::npos);
  CHECK(two.output.find("epoch 2/2  train loss") != std::string::npos);
  CHECK(two.output.find("test accuracy ") != std::string::npos);
  CHECK(count_lines(scratch().path / "cifar-two" / "history.csv") == 3);
  CHECK(fs::exists(scratch().path / "cifar-two" / "confusion_test.png"));

  auto full = tl::test::run_tool("transfer full " + common + "--epochs 1 --augment flip --output " +
                                 q(scratch().path / "cifar-full"));
  INFO(full.output);
  REQUIRE(full.exit_code == 0);
  CHECK(full.output.find("trainable 11,181,642 of 11,181,642 parameters") != std::string::npos);
}

TEST_CASE("tl transfer --help, and usage errors are one clear line") {
  auto help = tl::test::run_tool("transfer --help");
  CHECK(help.exit_code == 0);
  for (const char* option : {"extract", "two-stage", "--data", "--weights", "--head", "--unfreeze-from", "--train-last",
                             "--stage2-lr", "--augment", "--cache-dir", "--export", "--strict", "--binary"})
    CHECK_MESSAGE(help.output.find(option) != std::string::npos, option);

  auto one_line = [](const tl::test::ToolResult& r) {
    std::string out = r.output;
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out.find('\n') == std::string::npos;
  };
  auto unknown = tl::test::run_tool("transfer distill --data /tmp");
  CHECK(unknown.exit_code != 0);
  CHECK(one_line(unknown));
  CHECK(unknown.output.find("unknown mode 'distill'") != std::string::npos);

  auto missing = tl::test::run_tool("transfer extract --data /nonexistent/tl-data");
  CHECK(missing.exit_code != 0);
  CHECK(one_line(missing));
  CHECK(missing.output.find("/nonexistent/tl-data") != std::string::npos);

  fs::path lonely = scratch().path / "one-class" / "cats";
  fs::create_directories(lonely);
  std::ofstream(lonely / "a.jpg") << "x";
  auto one_class = tl::test::run_tool("transfer extract --data " + q(lonely.parent_path()));
  CHECK(one_class.exit_code != 0);
  CHECK(one_line(one_class));
  CHECK(one_class.output.find("only one class") != std::string::npos);

  auto bad_head = tl::test::run_tool("transfer finetune --data /tmp --head 256,relu6");
  CHECK(bad_head.exit_code != 0);
  CHECK(one_line(bad_head));
  CHECK(bad_head.output.find("unknown token 'relu6'") != std::string::npos);
}

TEST_CASE("Ctrl-C: tl transfer finishes the batch, saves the best model, history and plots, and exits 130") {
  fs::path out = scratch().path / "interrupted", log = scratch().path / "interrupted.log";
  std::string data = cifar().string(), output = out.string();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(TL_TOOL_PATH, "tl", "transfer", "full", "--data", data.c_str(), "--image-size", "32", "--epochs", "1000",
            "--batch-size", "16", "--threads", "2", "--output", output.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Two finished epochs, then Ctrl-C in the middle of the third.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (read_text(log).find("epoch 2/1000  train") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    ::usleep(50'000);
  ::usleep(200'000);
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::string text = read_text(log);
  INFO(text);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(text.find("interrupted: saved the best model so far, the history and the plots") != std::string::npos);
  int epochs = 0;
  for (size_t at = text.find("  train loss "); at != std::string::npos; at = text.find("  train loss ", at + 1)) ++epochs;
  CHECK(epochs >= 2);
  CHECK(count_lines(out / "history.csv") == 1 + epochs);
  tl::SafetensorsFile model = tl::SafetensorsFile::open((out / "model.safetensors").string());
  CHECK(model.metadata().count("transfer.best_epoch") == 1);
  for (const char* f : {"history.png", "confusion_val.csv", "confusion_val.png"}) CHECK_MESSAGE(fs::exists(out / f), f);
  for (auto& e : fs::directory_iterator(out))  // every file was renamed into place: no temporary is left behind
    CHECK_MESSAGE(e.path().filename().string().find(".tmp") == std::string::npos, e.path().string());
}

TEST_CASE("import_checkpoint and load_pretrained: container detection, one error listing every mismatch") {
  fs::path junk = scratch().path / "junk.bin";
  std::ofstream(junk) << "GIF89a not a checkpoint";
  try {
    tl::import_checkpoint(junk.string());
    FAIL("no error");
  } catch (const tl::Error& e) {
    std::string m = e.what();
    CHECK(m.find(junk.string() + ": not a checkpoint tl can read") == 0);
    CHECK(m.find("47 49 46 38") != std::string::npos);  // the first bytes, in hex
  }

  tl::Model model;
  tl::build_resnet18(model, 2);
  tl::ImportedCheckpoint c;
  c.format = "test";
  c.metadata["source.file"] = "made-up.pth";
  for (auto& p : model.named_parameters()) c.tensors.push_back({p.name, p.parameter->value.clone()});
  for (auto& b : model.named_buffers())
    if (b.name.find("num_batches_tracked") == std::string::npos) c.tensors.push_back({b.name, b.buffer->value.clone()});
  // A 100-way fc in the file against the model's 2-way head: allowed for the head only.
  c.tensors.erase(std::remove_if(c.tensors.begin(), c.tensors.end(), [](auto& t) { return t.name.rfind("fc.", 0) == 0; }),
                  c.tensors.end());
  c.tensors.push_back({"fc.weight", tl::Tensor::zeros({100, 512})});
  c.tensors.push_back({"fc.bias", tl::Tensor::zeros({100})});
  c.tensors[0].value.fill(0.25);  // conv1.weight
  tl::PretrainedLoadReport report;
  tl::load_pretrained(model, c, {"fc", "fc.*"}, true, &report);
  CHECK(model.parameter("conv1.weight").value.item(7) == 0.25);
  CHECK(report.head_kept == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(report.absent_counters == 20);  // no num_batches_tracked in the file: set to 0
  CHECK(report.loaded == 102 - 2);

  // Without the head allowance, and with a missing, an unexpected and a mis-shaped tensor: one error, all listed,
  // and the model untouched.
  c.tensors[0].value.fill(0.5);
  c.tensors.erase(c.tensors.begin() + 1);  // bn1.weight
  c.tensors.push_back({"layer5.0.conv1.weight", tl::Tensor::zeros({1})});
  c.tensors[2].value = tl::Tensor::zeros({3});  // bn1.running_mean? whichever: a [3] where the model has another shape
  std::string name2 = c.tensors[2].name;
  try {
    tl::load_pretrained(model, c, {}, false);
    FAIL("no error");
  } catch (const tl::Error& e) {
    std::string m = e.what();
    INFO(m);
    CHECK(m.find("made-up.pth: the weights do not fit this resnet18") == 0);
    CHECK(m.find("missing from the checkpoint (1):\n    bn1.weight") != std::string::npos);
    CHECK(m.find("unexpected in the checkpoint (1):\n    layer5.0.conv1.weight") != std::string::npos);
    CHECK(m.find(name2 + ": checkpoint F32[3] vs model F32[") != std::string::npos);
    CHECK(m.find("fc.weight: checkpoint F32[100,512] vs model F32[2,512]") != std::string::npos);
  }
  CHECK(model.parameter("conv1.weight").value.item(7) == 0.25);
}

TEST_CASE("import_checkpoint reads every container by its first bytes, with torchvision names and metadata") {
  fs::path fixtures = fs::path(tl::test::source_dir()) / "tests" / "fixtures";
  fs::path ref = fixtures / "pth" / "reduced_ref.safetensors";
  if (fs::exists(ref)) {
    tl::SafetensorsFile expected = tl::SafetensorsFile::open(ref.string());
    for (auto [file, format] : {std::pair<std::string, std::string>{"reduced_zip.pth", "pth-zip"},
                                {"reduced_legacy.pth", "pth-legacy"}, {"reduced_tar.pth", "pth-tar"}}) {
      INFO(file);
      tl::ImportedCheckpoint c = tl::import_checkpoint((fixtures / "pth" / file).string());
      CHECK(c.format == format);
      CHECK(c.metadata.at("source.format") == format);
      CHECK(c.metadata.at("source.file") == file);
      CHECK(c.metadata.count("architecture") == 0);  // one block per stage: not a ResNet18, so not inferred as one
      CHECK(c.metadata.at("preprocessing.color") == "RGB");  // a .pth is torchvision's convention
      REQUIRE(c.tensors.size() == expected.entries().size());
      for (const tl::ImportedTensor& t : c.tensors) CHECK(tl::test::bit_identical(t.value, expected.read(t.name)));
    }
    tl::ImportedCheckpoint s = tl::import_checkpoint(ref.string());
    CHECK(s.format == "safetensors");
    CHECK(s.tensors.size() == expected.entries().size());
  } else {
    MESSAGE("tests/fixtures/pth not present: .pth container checks skipped");
  }
  if (tl::keras_h5_supported()) {
    tl::ImportedCheckpoint k = tl::import_checkpoint((fixtures / "keras" / "vgg16_notop_keras2.h5").string());
    CHECK(k.format == "keras-h5");
    CHECK(k.metadata.at("architecture") == "vgg16");
    CHECK(k.metadata.at("include_top") == "false");
    CHECK(k.metadata.at("preprocessing.color") == "BGR");  // Keras' caffe mode, from the reader
    CHECK(k.tensors.front().name == "features.0.weight");
  }
  std::string shared = tl::test::shared_data_dir();
  if (!shared.empty()) {  // a real torchvision file cut short: named, with the byte counts
    try {
      tl::import_checkpoint(shared + "/weights/resnet18-f37072fd.truncated.pth");
      FAIL("no error");
    } catch (const tl::Error& e) {
      CHECK(std::string(e.what()).find("is truncated") != std::string::npos);
    }
  }
}
