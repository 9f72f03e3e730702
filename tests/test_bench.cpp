// tl bench end to end on the CPU: a tiny configuration (--quick: batch 2 at 64x64) run for real, and the markdown and
// JSON it writes checked field by field; the ratio column of --render against a hand-written PyTorch reference.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "engine/context.h"
#include "engine/model.h"
#include "layers/models/flops.h"
#include "layers/models/resnet18.h"
#include "support/run_tool.h"
#include "support/temp_dir.h"
#include "weights/json.h"

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const tl::json::Value& field(const tl::json::Value& object, const char* key) {
  const tl::json::Value* v = object.find(key);
  REQUIRE_MESSAGE(v != nullptr, "missing field ", key);
  return *v;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The FLOPs per image the bench must report for a ResNet18 mode at 64x64, counted here independently of the app.
int64_t resnet18_flops(const std::string& mode) {
  tl::Model model;
  tl::build_resnet18(model);
  if (mode == "inference") return tl::count_model_flops(model, {3, 64, 64}).forward();
  if (mode == "finetune" || mode == "head") {
    model.set_trainable("*", false);
    model.set_trainable("fc.*", true);
    if (mode == "finetune") model.set_trainable("layer4.*", true);
  }
  return tl::count_model_flops(model, {3, 64, 64}).training();
}

}  // namespace

TEST_CASE("tl bench --cpu --layers --quick measures ResNet18 and writes matching markdown and JSON") {
  tl::test::TempDir dir("bench");
  const std::string json_path = dir.file("bench.json"), md_path = dir.file("bench.md");
  auto run = tl::test::run_tool("bench --cpu --layers --layers-device cpu --quick --model resnet18 --threads 2 --json '" + json_path +
                                "' --markdown '" + md_path + "'");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  tl::json::Value doc = tl::json::parse(read_text(json_path));
  CHECK(field(doc, "tool").as_string() == "tl bench");
  CHECK(contains(field(doc, "command").as_string(), "--cpu --layers --layers-device cpu --quick"));

  // The CPU matrix rate is measured and is the roofline's denominator.
  double cpu_rate = 0;
  for (const auto& r : field(doc, "matrix_rates").as_array())
    if (field(r, "device").as_string() == "cpu" && field(r, "precision").as_string() == "fp32")
      cpu_rate = field(r, "tflops").as_number();
  CHECK(cpu_rate > 0);

  const auto& models = field(doc, "models").as_array();
  REQUIRE(models.size() == 4);
  const char* modes[] = {"inference", "train", "finetune", "head"};
  for (size_t i = 0; i < 4; ++i) {
    const auto& row = models[i];
    INFO("mode ", modes[i]);
    CHECK(row.find("error") == nullptr);
    CHECK(field(row, "device").as_string() == "cpu");
    CHECK(field(row, "model").as_string() == "resnet18");
    CHECK(field(row, "mode").as_string() == modes[i]);
    CHECK(field(row, "batch").as_int() == 2);
    CHECK(field(row, "image").as_int() == 64);
    CHECK(field(row, "reps").as_int() == 2);
    const double ms = field(row, "ms").as_number(), ips = field(row, "images_per_s").as_number();
    CHECK(ms > 0);
    CHECK(ips == doctest::Approx(2 * 1000.0 / ms).epsilon(1e-5));
    CHECK(field(row, "ms_min").as_number() <= ms);
    CHECK(field(row, "ms_max").as_number() >= ms);
    CHECK(field(row, "flops_per_image").as_int() == resnet18_flops(modes[i]));
    const double tflops = field(row, "tflops").as_number();
    CHECK(tflops == doctest::Approx(field(row, "flops_per_image").as_int() * ips / 1e12).epsilon(1e-5));
    CHECK(field(row, "fraction_of_matrix_rate").as_number() == doctest::Approx(tflops / cpu_rate).epsilon(1e-4));
    CHECK(field(row, "peak_bytes").is_null());  // no device allocator on the CPU
  }
  CHECK(field(models[2], "label").as_string() == "finetune layer4+fc");

  // Layer breakdown: every top-level child of ResNet18, backward for all of them (everything trains).
  const auto& layers = field(doc, "layers").as_array();
  std::vector<std::string> parts;
  double whole = 0, sum = 0, summed = 0;
  for (const auto& r : layers) {
    const std::string part = field(r, "part").as_string();
    parts.push_back(part);
    if (part == "whole step, timed as one") whole = field(r, "total_ms").as_number();
    else if (part == "sum of the parts") sum = field(r, "total_ms").as_number();
    else summed += field(r, "total_ms").as_number();
    if (part == "conv1" || part == "layer3" || part == "fc") {
      CHECK(field(r, "forward_ms").as_number() > 0);
      CHECK(field(r, "backward_ms").as_number() > 0);
    }
  }
  const std::vector<std::string> expected = {"zero_grad", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
                                             "layer3", "layer4", "avgpool", "flatten", "fc",
                                             "loss (softmax cross-entropy)", "optimizer step (SGD momentum)",
                                             "sum of the parts", "whole step, timed as one"};
  CHECK(parts == expected);
  CHECK(sum == doctest::Approx(summed).epsilon(1e-5));
  CHECK(whole > 0);

  // The markdown on stdout and in the file: the same tables.
  const std::string md = read_text(md_path);
  CHECK(contains(run.output, md));
  CHECK(contains(md, "## Models on cpu"));
  CHECK(contains(md, "| resnet18 | inference | 2 | 64 |"));
  CHECK(contains(md, "| resnet18 | finetune layer4+fc | 2 | 64 |"));
  CHECK(contains(md, "| resnet18 | head only (fc) | 2 | 64 |"));
  CHECK(contains(md, "% of fp32"));
  CHECK(contains(md, "## Where the time of one training step goes (resnet18, batch 2, 64x64, cpu)"));
  CHECK(contains(md, "| layer4 |"));
  CHECK_FALSE(contains(md, "## Models on cuda"));
}

TEST_CASE("tl bench --render puts the PyTorch reference beside each row with the ratio tl/PyTorch") {
  tl::test::TempDir dir("bench_render");
  write_text(dir.file("ours.json"), R"J({"tool": "tl bench", "command": "tl bench --cpu", "models": [
    {"device": "cpu", "model": "resnet18", "batch": 8, "image": 224, "mode": "inference", "label": "inference",
     "config": "tl", "ms": 100.0, "images_per_s": 80.0, "peak_bytes": null, "flops_per_image": 3628146688,
     "tflops": 0.29, "matrix_rate": "fp32", "fraction_of_matrix_rate": 0.5},
    {"device": "cpu", "model": "resnet18", "batch": 8, "image": 224, "mode": "train", "label": "train (all layers)",
     "config": "tl", "ms": 400.0, "images_per_s": 20.0, "peak_bytes": null},
    {"device": "cpu", "model": "vgg16", "batch": 8, "image": 224, "mode": "inference", "label": "inference",
     "config": "tl", "error": "out of memory | somewhere"}]})J");
  write_text(dir.file("torch.json"), R"J({"tool": "pytorch", "command": "python3 bench/pytorch_reference.py",
    "torch_version": "1.13.0", "device_name": "cpu", "tf32": {"cudnn": false, "matmul": false}, "models": [
    {"device": "cpu", "model": "resnet18", "batch": 8, "image": 224, "mode": "inference", "config": "eager_fp32",
     "images_per_s": 40.0, "peak_bytes": null},
    {"device": "cpu", "model": "resnet18", "batch": 8, "image": 224, "mode": "train", "config": "eager_fp32",
     "error": "timed out"}]})J");
  auto run = tl::test::run_tool("bench --render '" + dir.file("ours.json") + "' --reference '" + dir.file("torch.json") + "'");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  CHECK(contains(run.output, "| eager_fp32 img/s | eager_fp32 peak MiB | **tl/eager_fp32** |"));
  CHECK(contains(run.output, "| resnet18 | inference | 8 | 224 | 80.0 | 100.00 | n/a | 3.63 | 0.29 | 50.0% of fp32 | 40.0 | n/a | **2.00** |"));
  CHECK(contains(run.output, "| resnet18 | train (all layers) | 8 | 224 | 20.0 |"));
  CHECK(contains(run.output, "timed out"));
  CHECK(contains(run.output, "error: out of memory   somewhere"));  // a '|' in a message cannot break the table
  CHECK(contains(run.output, "not run"));  // vgg16 has no reference row
  CHECK(contains(run.output, "PyTorch 1.13.0"));
  CHECK(contains(run.output, "reference TF32: cudnn=off matmul=off"));
}

TEST_CASE("tl bench says what it cannot do") {
  if (!tl::Context::cuda_available()) {
    auto kernels = tl::test::run_tool("bench --kernels");
    CHECK(kernels.exit_code == 1);
    CHECK(contains(kernels.output, "need a CUDA device"));
  }
  auto model = tl::test::run_tool("bench --cpu --model resnet50");
  CHECK(model.exit_code == 1);
  CHECK(contains(model.output, "unknown model 'resnet50'"));
  auto help = tl::test::run_tool("bench --help");
  CHECK(help.exit_code == 0);
  for (const char* flag : {"--kernels", "--models", "--cpu", "--layers", "--quick", "--json", "--reference"})
    CHECK(contains(help.output, flag));
}
