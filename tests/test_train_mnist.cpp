#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <utility>

#include "engine/context.h"
#include "support/run_tool.h"

namespace {
const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

double parse_result_accuracy(const std::string& output) {
  size_t at = output.find("RESULT accuracy=");
  if (at == std::string::npos) return -1;
  return std::atof(output.c_str() + at + std::string("RESULT accuracy=").size());
}
}  // namespace

TEST_CASE("tl train-mnist learns Fashion-MNIST from a small fixed slice") {
  if (!std::filesystem::exists(kFashionMnist)) {
    MESSAGE("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): skipped");
    return;
  }
#ifndef TL_HAVE_ZLIB
  MESSAGE("skipped: the Fashion-MNIST files are gzipped and tl was built without zlib");
  return;
#endif
  // 2000 training images, 2 epochs, seed 1: 77.7% here (seeds 1-3 gave 74-78%). Chance is 10%; the floor of 70%
  // leaves room for rounding that depends on the thread count, and still fails for any broken layer or update.
  auto run = tl::test::run_tool("train-mnist --epochs 2 --train-limit 2000 --test-limit 1000 --seed 1 --threads 2");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  CHECK(run.output.find("epoch 2/2") != std::string::npos);
  CHECK(parse_result_accuracy(run.output) >= 0.70);
}

TEST_CASE("tl reports errors and usage instead of crashing") {
  auto missing = tl::test::run_tool("train-mnist --data /nonexistent/folder --epochs 1");
  CHECK(missing.exit_code == 1);
  CHECK(missing.output.find("/nonexistent/folder") != std::string::npos);
  auto bad_option = tl::test::run_tool("train-mnist --no-such-option 3");
  CHECK(bad_option.exit_code == 1);
  CHECK(bad_option.output.find("unknown option --no-such-option") != std::string::npos);
  auto help = tl::test::run_tool("train-mnist --help");
  CHECK(help.exit_code == 0);
  CHECK(help.output.find("--batch-size") != std::string::npos);
  auto unknown = tl::test::run_tool("no-such-command");
  CHECK(unknown.exit_code == 2);
}

TEST_CASE("--device of every subcommand that computes: a bad name, or cuda without a GPU, is one clean error line") {
  auto one_line = [](const tl::test::ToolResult& r) {
    return !r.output.empty() && r.output.find('\n') == r.output.size() - 1;
  };
  // Each fails before reading any data or weights, so the paths need not exist.
  const std::pair<const char*, int> commands[] = {
      {"train-mnist --data /nonexistent --epochs 1", 1},
      {"transfer extract --data /nonexistent", 2},
      {"predict /nonexistent/model.safetensors /nonexistent/image.jpg", 2},
      {"classify --weights /nonexistent/model.safetensors /nonexistent/image.jpg", 2},
  };
  for (const auto& [command, status] : commands) {
    INFO(command);
    auto bad = tl::test::run_tool(std::string(command) + " --device tpu");
    INFO(bad.output);
    CHECK(bad.exit_code == status);
    CHECK(one_line(bad));
    CHECK(bad.output.find("--device must be auto, cpu or cuda, got 'tpu'") != std::string::npos);
    if (tl::Context::cuda_available()) continue;  // on a GPU machine --device cuda is valid
    auto cuda = tl::test::run_tool(std::string(command) + " --device cuda");
    INFO(cuda.output);
    CHECK(cuda.exit_code == status);
    CHECK(one_line(cuda));
    CHECK(cuda.output.find("--device cuda, but no CUDA device is usable here") != std::string::npos);
  }
}
