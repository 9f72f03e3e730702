#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "cuda/cuda_test.h"
#include "engine/context.h"

namespace tl::test {
namespace {
int& cuda_test_count() {
  static int count = 0;
  return count;
}
}  // namespace
int register_cuda_test() { return ++cuda_test_count(); }
}  // namespace tl::test

int main(int argc, char** argv) {
  if (!tl::Context::cuda_available()) {
    std::printf("no CUDA device: %d CUDA tests skipped\n", tl::test::cuda_test_count());
    return 77;  // CTest's SKIP_RETURN_CODE for this test
  }
  doctest::Context context(argc, argv);
  return context.run();
}
