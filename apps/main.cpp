// tl: one program, one subcommand per job.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <unistd.h>

#include "apps/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"transfer", tl::app::run_transfer, "transfer learning: extract | finetune | two-stage | full from pretrained weights"},
    {"predict", tl::app::run_predict, "class and probability of images (and folders) under a tl transfer model"},
    {"train-mnist", tl::app::run_train_mnist, "train a small CNN on Fashion-MNIST (the first real job)"},
    {"convert", tl::app::run_convert, "convert a published checkpoint (.pth, Keras .h5, hub safetensors) to tl's format"},
    {"classify", tl::app::run_classify, "top-5 classes of images under a converted checkpoint"},
    {"bench", tl::app::run_bench, "benchmarks: kernels vs copy bandwidth and cuDNN, models vs PyTorch, per-layer times"},
    {"info", tl::app::run_info, "show the build, the CPU threads and whether a CUDA device exists"},
};

void print_usage() {
  std::printf("usage: tl <command> [options]   (tl <command> --help for its options)\n\ncommands:\n");
  for (const Command& c : kCommands) std::printf("  %-14s %s\n", c.name, c.summary);
}

}  // namespace

// OpenMP threads that spin while idle starve everything else sharing the cores (our image-decoding threads, other
// processes): measured 6.6x slower training on a loaded 2-core machine. libgomp reads OMP_WAIT_POLICY when it
// loads, before main, so the only way to choose it from inside is to run ourselves again with it set. A user's own
// setting wins.
void prefer_passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then go on with the default policy
}

int main(int argc, char** argv) {
  prefer_passive_openmp_waits(argv);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(argc - 2, argv + 2);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tl %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "tl: unknown command '%s'\n\n", argv[1]);
  print_usage();
  return 2;
}
