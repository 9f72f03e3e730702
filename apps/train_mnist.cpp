#include "apps/args.h"
#include "apps/commands.h"
#include "engine/error.h"

namespace tl::app {

int run_train_mnist(int argc, char** argv) {
  Args args("train-mnist", "Train a small CNN on Fashion-MNIST.");
  if (!args.parse(argc, argv)) return 0;
  throw Error("train-mnist: not built yet");
}

}  // namespace tl::app
