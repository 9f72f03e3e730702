#pragma once
// CUDA tests register through CUDA_TEST_CASE so that, without a device, the binary can say how
// many it skipped (tests/cuda/main.cpp) instead of passing silently.
#include <doctest/doctest.h>

namespace tl::test {
int register_cuda_test();
}

#define TL_CUDA_TEST_CONCAT2(a, b) a##b
#define TL_CUDA_TEST_CONCAT(a, b) TL_CUDA_TEST_CONCAT2(a, b)
#define CUDA_TEST_CASE(name)                                                                        \
  static const int TL_CUDA_TEST_CONCAT(tl_cuda_test_registered_, __LINE__) = ::tl::test::register_cuda_test(); \
  TEST_CASE(name)
